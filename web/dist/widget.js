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
`;var k='<svg class="chat" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg><svg class="shut" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false"><path stroke="currentColor" stroke-width="2.5" stroke-linecap="round" d="M6 6l12 12M18 6L6 18"/></svg>';function T(u){let f=u.dataset.project;if(!f){console.warn("Fleety: the widget's script tag needs data-project");return}let p=new URL(u.src,location.href).origin,s=document.createElement("fleety-widget"),l=s.attachShadow({mode:"open"});l.innerHTML=`<style>${S}</style><div class="panel" part="panel" hidden></div><button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false">${k}<span class="badge" hidden></span></button>`;let n=l.querySelector(".launcher"),h=l.querySelector(".badge"),r=l.querySelector(".panel"),x=[],t={open:!1,locale:(u.dataset.locale||navigator.language||"en").toLowerCase(),theme:{},visitor:void 0,identity:void 0},b,d,m={base:p,project:f,root:l,panel:r,launcher:n,get locale(){return t.locale},get visitor(){return t.visitor},setBadge(e){h.hidden=e<=0,h.textContent=e>9?"9+":String(e),n.setAttribute("aria-label",m.label(e))},label:e=>e>0?`Open support chat (${e} unread)`:"Open support chat",emit(e,a){for(let o of x)if(o.event===e)try{o.fn(a)}catch(i){console.error("Fleety: a listener failed",i)}},close:()=>c(!1),ui:void 0};function g(){return b??(b=import(`${p}/widget/ui.js?v=4ffaa1b3afd8`).then(e=>(d=e.mount(m),m.ui=d,d?.setLocale(t.locale),t.identity&&d?.identify(t.identity),d))),b}function c(e){t.open=e,s.toggleAttribute("data-open",e),n.setAttribute("aria-expanded",String(e)),r.hidden=!e,e?g().then(a=>a?.opened()):(d?.closed(),n.focus())}function w(e){t.theme={...t.theme,...e};let a=t.theme,o=[["--fleety-accent",a.color],["--fleety-font",a.font],["--fleety-radius",a.radius]];for(let[i,y]of o)y&&s.style.setProperty(i,y);s.setAttribute("data-position",a.position==="left"?"left":"right")}function v(e){let[a,...o]=e;switch(a){case"open":return c(!0);case"close":return c(!1);case"toggle":return c(!t.open);case"setLocale":return t.locale=String(o[0]||"en").toLowerCase(),d?.setLocale(t.locale);case"setTheme":return w(o[0]||{});case"setVisitor":t.visitor=E(o[0]);return;case"on":typeof o[1]=="function"&&x.push({event:String(o[0]),fn:o[1]});return;case"identify":{let i=o[0];if(!i||typeof i!="object"){console.warn("Fleety: identify needs an object: {user_id, user_hash} or {token}");return}return t.identity=i,d?.identify(t.identity)}case"openTicket":{let i=String(o[0]||"");return i?(c(!0),g().then(y=>y?.openTicket(i))):void 0}case"reset":return t.identity=void 0,g().then(i=>i?.reset());default:console.warn(`Fleety: unknown command ${String(a)}`)}}n.addEventListener("click",()=>c(!t.open)),w({}),m.setBadge(0),(document.body||document.documentElement).appendChild(s);let C=Array.isArray(window.Fleety)?window.Fleety:[];window.Fleety={push:e=>v(e)};for(let e of C)v(e);(window.requestIdleCallback??(e=>setTimeout(e,1500)))(()=>g(),{timeout:4e3})}function E(u){let f=u??{},p=(n,h)=>{let r=f[n];if(!(r==null||r==="")){if(typeof r=="string"&&h(r.trim()))return r.trim();console.warn(`Fleety: setVisitor's ${n} is not valid and is left out`)}},s=p("name",n=>n.length>0&&[...n].length<=80&&!/[\0-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/.test(n)),l=p("email",n=>n.length<=254&&/^[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$/.test(n));return s||l?{name:s,email:l}:void 0}var L=document.currentScript;L&&T(L);})();
