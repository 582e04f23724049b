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
`;var T='<svg class="chat" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg><svg class="shut" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false"><path stroke="currentColor" stroke-width="2.5" stroke-linecap="round" d="M6 6l12 12M18 6L6 18"/></svg>';function k(p){let m=p.dataset.project;if(!m){console.warn("Fleety: the widget's script tag needs data-project");return}let f=new URL(p.src,location.href).origin,r=document.createElement("fleety-widget"),i=r.attachShadow({mode:"open"});i.innerHTML=`<style>${S}</style><div class="panel" part="panel" hidden></div><button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false">${T}<span class="badge" hidden></span></button>`;let l=i.querySelector(".launcher"),g=i.querySelector(".badge"),b=i.querySelector(".panel"),y=[],n={open:!1,locale:(p.dataset.locale||navigator.language||"en").toLowerCase(),theme:{}},u,a,c={base:f,project:m,root:i,panel:b,launcher:l,get locale(){return n.locale},setBadge(e){g.hidden=e<=0,g.textContent=e>9?"9+":String(e),l.setAttribute("aria-label",c.label(e))},label:e=>e>0?`Open support chat (${e} unread)`:"Open support chat",emit(e,t){for(let o of y)if(o.event===e)try{o.fn(t)}catch(d){console.error("Fleety: a listener failed",d)}},close:()=>s(!1),ui:void 0};function h(){return u??(u=import(`${f}/widget/ui.js?v=f5917d7ad52d`).then(e=>(a=e.mount(c),c.ui=a,a?.setLocale(n.locale),a))),u}function s(e){n.open=e,r.toggleAttribute("data-open",e),l.setAttribute("aria-expanded",String(e)),b.hidden=!e,e?h().then(t=>t?.opened()):(a?.closed(),l.focus())}function x(e){n.theme={...n.theme,...e};let t=n.theme,o=[["--fleety-accent",t.color],["--fleety-font",t.font],["--fleety-radius",t.radius]];for(let[d,v]of o)v&&r.style.setProperty(d,v);r.setAttribute("data-position",t.position==="left"?"left":"right")}function w(e){let[t,...o]=e;switch(t){case"open":return s(!0);case"close":return s(!1);case"toggle":return s(!n.open);case"setLocale":return n.locale=String(o[0]||"en").toLowerCase(),a?.setLocale(n.locale);case"setTheme":return x(o[0]||{});case"on":typeof o[1]=="function"&&y.push({event:String(o[0]),fn:o[1]});return;case"reset":return h().then(d=>d?.reset());default:console.warn(`Fleety: unknown command ${String(t)}`)}}l.addEventListener("click",()=>s(!n.open)),x({}),c.setBadge(0),(document.body||document.documentElement).appendChild(r);let C=Array.isArray(window.Fleety)?window.Fleety:[];window.Fleety={push:e=>w(e)};for(let e of C)w(e);(window.requestIdleCallback??(e=>setTimeout(e,1500)))(()=>h(),{timeout:4e3})}var L=document.currentScript;L&&k(L);})();
