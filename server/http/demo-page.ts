import type { RequestHandler } from 'express';

// A placeholder until the demo page issue lands: it tells a visitor what this is and how to use it.
const PAGE = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Timeline service</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>
<main>
<h1>Timeline service</h1>
<p>Runs AI agent workflows and streams their progress over Server-Sent Events.</p>
<ol>
<li>Open <code>GET /timeline/stream/&lt;uuid&gt;</code> and wait for <code>event: ready</code>.</li>
<li><code>POST /execute</code> with <code>{"project_id", "query", "session_id": "&lt;uuid&gt;"}</code>.</li>
<li>Read events until <code>event: done</code>.</li>
</ol>
</main>
</body>
</html>
`;

export const demoPageRoute: RequestHandler = (_req, res) => {
  res.type('html').send(PAGE);
};
