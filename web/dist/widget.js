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
`;var k='<svg class="chat" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg><svg class="shut" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false"><path stroke="currentColor" stroke-width="2.5" stroke-linecap="round" d="M6 6l12 12M18 6L6 18"/></svg>';function T(p){let f=p.dataset.project;if(!f){console.warn("Fleety: the widget's script tag needs data-project");return}let m=new URL(p.src,location.href).origin,r=document.createElement("fleety-widget"),s=r.attachShadow({mode:"open"});s.innerHTML=`<style>${S}</style><div class="panel" part="panel" hidden></div><button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false">${k}<span class="badge" hidden></span></button>`;let l=s.querySelector(".launcher"),g=s.querySelector(".badge"),y=s.querySelector(".panel"),b=[],t={open:!1,locale:(p.dataset.locale||navigator.language||"en").toLowerCase(),theme:{},identity:void 0},u,i,c={base:m,project:f,root:s,panel:y,launcher:l,get locale(){return t.locale},setBadge(e){g.hidden=e<=0,g.textContent=e>9?"9+":String(e),l.setAttribute("aria-label",c.label(e))},label:e=>e>0?`Open support chat (${e} unread)`:"Open support chat",emit(e,n){for(let o of b)if(o.event===e)try{o.fn(n)}catch(a){console.error("Fleety: a listener failed",a)}},close:()=>d(!1),ui:void 0};function h(){return u??(u=import(`${m}/widget/ui.js?v=9bedc3bf2984`).then(e=>(i=e.mount(c),c.ui=i,i?.setLocale(t.locale),t.identity&&i?.identify(t.identity),i))),u}function d(e){t.open=e,r.toggleAttribute("data-open",e),l.setAttribute("aria-expanded",String(e)),y.hidden=!e,e?h().then(n=>n?.opened()):(i?.closed(),l.focus())}function x(e){t.theme={...t.theme,...e};let n=t.theme,o=[["--fleety-accent",n.color],["--fleety-font",n.font],["--fleety-radius",n.radius]];for(let[a,v]of o)v&&r.style.setProperty(a,v);r.setAttribute("data-position",n.position==="left"?"left":"right")}function w(e){let[n,...o]=e;switch(n){case"open":return d(!0);case"close":return d(!1);case"toggle":return d(!t.open);case"setLocale":return t.locale=String(o[0]||"en").toLowerCase(),i?.setLocale(t.locale);case"setTheme":return x(o[0]||{});case"on":typeof o[1]=="function"&&b.push({event:String(o[0]),fn:o[1]});return;case"identify":{let a=o[0];if(!a||typeof a!="object"){console.warn("Fleety: identify needs an object: {user_id, user_hash} or {token}");return}return t.identity=a,i?.identify(t.identity)}case"reset":return t.identity=void 0,h().then(a=>a?.reset());default:console.warn(`Fleety: unknown command ${String(n)}`)}}l.addEventListener("click",()=>d(!t.open)),x({}),c.setBadge(0),(document.body||document.documentElement).appendChild(r);let C=Array.isArray(window.Fleety)?window.Fleety:[];window.Fleety={push:e=>w(e)};for(let e of C)w(e);(window.requestIdleCallback??(e=>setTimeout(e,1500)))(()=>h(),{timeout:4e3})}var L=document.currentScript;L&&T(L);})();
