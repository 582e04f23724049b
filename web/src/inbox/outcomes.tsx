// How the assistant does: how its conversations ended (resolved, escalated, abandoned, still
// open) and the visitors' ratings of its answers, over the last day, week or month.

import { useEffect, useState } from "preact/hooks";

import type { Api, AssistantOutcomes } from "./api";

const RANGES = [
  { days: 1, label: "24 hours" },
  { days: 7, label: "7 days" },
  { days: 30, label: "30 days" },
];

export function AssistantOutcomesPanel({ api }: { api: Api }) {
  const [days, setDays] = useState(7);
  const [counts, setCounts] = useState<AssistantOutcomes>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    const from = new Date(Date.now() - days * 86_400_000).toISOString();
    api.outcomes(from).then(
      (c) => {
        setCounts(c);
        setError(undefined);
      },
      (e) => setError((e as Error).message),
    );
  }, [days]);
  const ended = counts ? counts.resolved + counts.escalated + counts.abandoned : 0;
  const share = (n: number) => (ended ? ` (${Math.round((100 * n) / ended)} %)` : "");
  return (
    <section class="card outcomes" aria-labelledby="outcomes-title">
      <h2 id="outcomes-title">How the assistant does</h2>
      <p class="hint">
        Conversations with the assistant that started in the last{" "}
        <select aria-label="Time range" value={days} onChange={(e) => setDays(Number((e.target as HTMLSelectElement).value))}>
          {RANGES.map((r) => (
            <option value={r.days} key={r.days}>
              {r.label}
            </option>
          ))}
        </select>
        , by how they ended. A conversation ends at a hand-off, or 30 minutes after its last message.
      </p>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {counts && (
        <dl class="figures">
          <div data-outcome="resolved">
            <dt>Resolved</dt>
            <dd>
              {counts.resolved}
              {share(counts.resolved)}
            </dd>
          </div>
          <div data-outcome="escalated">
            <dt>Escalated</dt>
            <dd>
              {counts.escalated}
              {share(counts.escalated)}
            </dd>
          </div>
          <div data-outcome="abandoned">
            <dt>Abandoned</dt>
            <dd>
              {counts.abandoned}
              {share(counts.abandoned)}
            </dd>
          </div>
          <div data-outcome="open">
            <dt>Still open</dt>
            <dd>{counts.open}</dd>
          </div>
          <div data-outcome="up">
            <dt>Rated helpful</dt>
            <dd>{counts.feedback.up}</dd>
          </div>
          <div data-outcome="down">
            <dt>Rated not helpful</dt>
            <dd>{counts.feedback.down}</dd>
          </div>
        </dl>
      )}
    </section>
  );
}
