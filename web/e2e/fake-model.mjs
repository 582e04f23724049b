// An OpenAI-compatible model server for the browser tests, paced like a real one: an answer
// streams a word every 40 ms, so a visitor sees it grow. Asked for a person with tools on, it
// calls `create_ticket`; otherwise it answers from the passage the server's system prompt quotes.

import { createServer } from "node:http";

const PACE_MS = 40;

function chunk(delta, finish = null) {
  return `data: ${JSON.stringify({
    id: "chatcmpl-e2e",
    object: "chat.completion.chunk",
    created: 1_700_000_000,
    model: "e2e",
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function answerFor(request) {
  const system = request.messages.find((m) => m.role === "system")?.content ?? "";
  const question = [...request.messages].reverse().find((m) => m.role === "user")?.content ?? "";
  const wantsPerson = /\b(person|human|agent)\b/i.test(question);
  if (wantsPerson && request.tools?.length) {
    return { tool: { title: "Wants to talk to a person", description: question.slice(0, 200) } };
  }
  const passage = /Refunds go back[^\n]*/.exec(system)?.[0];
  return { text: passage ? `Good question! ${passage}` : "I am not sure; a person from our team can help." };
}

export async function startFakeModel() {
  const server = createServer(async (req, res) => {
    if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
      res.writeHead(404).end();
      return;
    }
    let body = "";
    for await (const piece of req) body += piece;
    const request = JSON.parse(body);
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
    const reply = answerFor(request);
    res.write(chunk({ role: "assistant", content: "" }));
    if (reply.tool) {
      res.write(
        chunk({
          tool_calls: [
            { index: 0, id: "call_e2e", type: "function", function: { name: "create_ticket", arguments: JSON.stringify(reply.tool) } },
          ],
        }),
      );
      res.write(chunk({}, "tool_calls"));
    } else {
      for (const word of reply.text.split(/(?<= )/)) {
        await sleep(PACE_MS);
        res.write(chunk({ content: word }));
      }
      res.write(chunk({}, "stop"));
    }
    res.end("data: [DONE]\n\n");
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    close: () => new Promise((done) => server.close(done)),
  };
}
