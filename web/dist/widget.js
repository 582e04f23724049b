"use strict";(()=>{var S=`
:host {
  all: initial !important;
  position: fixed !important;
  z-index: 2147483000 !important;
  bottom: 20px !important;
  right: 20px !important;
  left: auto !important;
  display: block !important;
  font-family: var(--fleety-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif) !important;
  font-size: 15px !important;
  line-height: 1.4 !important;
  color: #1d1d1f !important;
}
:host([data-position="left"]) { left: 20px !important; right: auto !important; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
.launcher {
  all: unset;
  box-sizing: border-box;
  position: relative;
  display: grid;
  place-items: center;
  width: 56px;
  height: 56px;
  border-radius: 50%;
  cursor: pointer;
  color: #fff;
  background: var(--fleety-accent, #3b5bdb);
  box-shadow: 0 6px 20px rgba(0, 0, 0, 0.22);
  margin-left: auto;
}
:host([data-position="left"]) .launcher { margin-left: 0; }
.launcher:focus-visible { outline: 3px solid #fff; box-shadow: 0 0 0 6px var(--fleety-accent, #3b5bdb); }
.badge {
  position: absolute;
  top: -2px;
  right: -2px;
  min-width: 20px;
  height: 20px;
  padding: 0 5px;
  border-radius: 10px;
  background: #d6336c;
  color: #fff;
  font-size: 12px;
  font-weight: 700;
  line-height: 20px;
  text-align: center;
}
.panel { margin-bottom: 12px; }
/* Open, the launcher shows what a click does: close. */
.launcher .shut { display: none; }
:host([data-open]) .launcher .chat { display: none; }
:host([data-open]) .launcher .shut { display: block; }
@media (max-width: 480px) {
  /* A phone's open panel fills the screen, over the launcher. */
  :host([data-open]) { inset: 0 !important; }
  :host([data-open]) .launcher { display: none; }
  :host([data-open]) .panel { margin: 0; }
}
`;var k='<svg class="chat" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg><svg class="shut" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false"><path stroke="currentColor" stroke-width="2.5" stroke-linecap="round" d="M6 6l12 12M18 6L6 18"/></svg>';function T(c){let f=c.dataset.project;if(!f){console.warn("Fleety: the widget's script tag needs data-project");return}let u=new URL(c.src,location.href).origin,s=document.createElement("fleety-widget"),l=s.attachShadow({mode:"open"});l.innerHTML=`<style>${S}</style><div class="panel" part="panel" hidden></div><button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false">${k}<span class="badge" hidden></span></button>`;let n=l.querySelector(".launcher"),h=l.querySelector(".badge"),a=l.querySelector(".panel"),b=[],t={open:!1,locale:(c.dataset.locale||navigator.language||"en").toLowerCase(),theme:{},visitor:void 0,identity:void 0},g,d,m={base:u,project:f,root:l,panel:a,launcher:n,get locale(){return t.locale},get visitor(){return t.visitor},setBadge(e){h.hidden=e<=0,h.textContent=e>9?"9+":String(e),n.setAttribute("aria-label",m.label(e))},label:e=>e>0?`Open support chat (${e} unread)`:"Open support chat",emit(e,i){for(let o of b)if(o.event===e)try{o.fn(i)}catch(r){console.error("Fleety: a listener failed",r)}},close:()=>p(!1),ui:void 0};function y(){return g??(g=import(`${u}/widget/ui.js?v=487f970e7ecf`).then(e=>(d=e.mount(m),m.ui=d,d?.setLocale(t.locale),t.identity&&d?.identify(t.identity),d))),g}function p(e){t.open=e,s.toggleAttribute("data-open",e),n.setAttribute("aria-expanded",String(e)),a.hidden=!e,e?y().then(i=>i?.opened()):(d?.closed(),n.focus())}function x(e){t.theme={...t.theme,...e};let i=t.theme,o=[["--fleety-accent",i.color],["--fleety-font",i.font],["--fleety-radius",i.radius]];for(let[r,v]of o)v&&s.style.setProperty(r,v);s.setAttribute("data-position",i.position==="left"?"left":"right")}function w(e){let[i,...o]=e;switch(i){case"open":return p(!0);case"close":return p(!1);case"toggle":return p(!t.open);case"setLocale":return t.locale=String(o[0]||"en").toLowerCase(),d?.setLocale(t.locale);case"setTheme":return x(o[0]||{});case"setVisitor":t.visitor=E(o[0]);return;case"on":typeof o[1]=="function"&&b.push({event:String(o[0]),fn:o[1]});return;case"identify":{let r=o[0];if(!r||typeof r!="object"){console.warn("Fleety: identify needs an object: {user_id, user_hash} or {token}");return}return t.identity=r,d?.identify(t.identity)}case"reset":return t.identity=void 0,y().then(r=>r?.reset());default:console.warn(`Fleety: unknown command ${String(i)}`)}}n.addEventListener("click",()=>p(!t.open)),x({}),m.setBadge(0),(document.body||document.documentElement).appendChild(s);let C=Array.isArray(window.Fleety)?window.Fleety:[];window.Fleety={push:e=>w(e)};for(let e of C)w(e);(window.requestIdleCallback??(e=>setTimeout(e,1500)))(()=>y(),{timeout:4e3})}function E(c){let f=c??{},u=(n,h)=>{let a=f[n];if(!(a==null||a==="")){if(typeof a=="string"&&h(a.trim()))return a.trim();console.warn(`Fleety: setVisitor's ${n} is not valid and is left out`)}},s=u("name",n=>n.length>0&&[...n].length<=80&&!/[\0-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/.test(n)),l=u("email",n=>n.length<=254&&/^[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$/.test(n));return s||l?{name:s,email:l}:void 0}var L=document.currentScript;L&&T(L);})();
