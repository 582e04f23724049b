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
`;var k='<svg class="chat" viewBox="0 0 24 24" width="28" height="28" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg><svg class="shut" viewBox="0 0 24 24" width="24" height="24" aria-hidden="true" focusable="false"><path stroke="currentColor" stroke-width="2.5" stroke-linecap="round" d="M6 6l12 12M18 6L6 18"/></svg>';function T(d){let h=d.dataset.project;if(!h){console.warn("Fleety: the widget's script tag needs data-project");return}let c=new URL(d.src,location.href).origin,r=document.createElement("fleety-widget"),s=r.attachShadow({mode:"open"});s.innerHTML=`<style>${S}</style><div class="panel" part="panel" hidden></div><button class="launcher" type="button" aria-haspopup="dialog" aria-expanded="false">${k}<span class="badge" hidden></span></button>`;let t=s.querySelector(".launcher"),f=s.querySelector(".badge"),i=s.querySelector(".panel"),x=[],n={open:!1,locale:(d.dataset.locale||navigator.language||"en").toLowerCase(),theme:{},visitor:void 0},g,l,m={base:c,project:h,root:s,panel:i,launcher:t,get locale(){return n.locale},get visitor(){return n.visitor},setBadge(e){f.hidden=e<=0,f.textContent=e>9?"9+":String(e),t.setAttribute("aria-label",m.label(e))},label:e=>e>0?`Open support chat (${e} unread)`:"Open support chat",emit(e,o){for(let a of x)if(a.event===e)try{a.fn(o)}catch(p){console.error("Fleety: a listener failed",p)}},close:()=>u(!1),ui:void 0};function b(){return g??(g=import(`${c}/widget/ui.js?v=43f08406c8df`).then(e=>(l=e.mount(m),m.ui=l,l?.setLocale(n.locale),l))),g}function u(e){n.open=e,r.toggleAttribute("data-open",e),t.setAttribute("aria-expanded",String(e)),i.hidden=!e,e?b().then(o=>o?.opened()):(l?.closed(),t.focus())}function y(e){n.theme={...n.theme,...e};let o=n.theme,a=[["--fleety-accent",o.color],["--fleety-font",o.font],["--fleety-radius",o.radius]];for(let[p,v]of a)v&&r.style.setProperty(p,v);r.setAttribute("data-position",o.position==="left"?"left":"right")}function w(e){let[o,...a]=e;switch(o){case"open":return u(!0);case"close":return u(!1);case"toggle":return u(!n.open);case"setLocale":return n.locale=String(a[0]||"en").toLowerCase(),l?.setLocale(n.locale);case"setTheme":return y(a[0]||{});case"setVisitor":n.visitor=E(a[0]);return;case"on":typeof a[1]=="function"&&x.push({event:String(a[0]),fn:a[1]});return;case"reset":return b().then(p=>p?.reset());default:console.warn(`Fleety: unknown command ${String(o)}`)}}t.addEventListener("click",()=>u(!n.open)),y({}),m.setBadge(0),(document.body||document.documentElement).appendChild(r);let C=Array.isArray(window.Fleety)?window.Fleety:[];window.Fleety={push:e=>w(e)};for(let e of C)w(e);(window.requestIdleCallback??(e=>setTimeout(e,1500)))(()=>b(),{timeout:4e3})}function E(d){let h=d??{},c=(t,f)=>{let i=h[t];if(!(i==null||i==="")){if(typeof i=="string"&&f(i.trim()))return i.trim();console.warn(`Fleety: setVisitor's ${t} is not valid and is left out`)}},r=c("name",t=>t.length>0&&[...t].length<=80&&!/[\0-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/.test(t)),s=c("email",t=>t.length<=254&&/^[\w.!#$%&'*+/=?^`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$/.test(t));return r||s?{name:r,email:s}:void 0}var L=document.currentScript;L&&T(L);})();
