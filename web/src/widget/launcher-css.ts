// The launcher's styles, inside the widget's shadow root. `:host` declarations are
// `!important` so that host-page rules such as `* { all: unset }` cannot reach the widget's
// box: in the cascade, a shadow tree's important declarations win over the page's.

export const LAUNCHER_CSS = `
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
`;
