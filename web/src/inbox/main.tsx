// The agents' inbox: sign in with the project's admin key, then the project's tickets, live.
import { render } from "preact";
import { App } from "./app";

const root = document.getElementById("app");
if (root) render(<App />, root);
