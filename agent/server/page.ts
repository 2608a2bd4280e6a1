/**
 * The report page served at GET /: one HTML string, no build step. Its inline script draws with
 * Chart.js (the UMD build, served from /assets/chart.js as the global `Chart`) from the agent's
 * own JSON endpoints, so the page works wherever the API is reachable (a port-forward included).
 *
 * Once the first data has been drawn, the page sets `window.hookmeterReady = true` and
 * `<body data-ready="true">`; each time the selected run's charts are drawn it sets
 * `<body data-run="<id>">`. Tests and screenshots wait on these.
 */

const STYLE = `
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg) }
header, main { max-width: 1200px; margin: 0 auto; padding: 0 20px }
header { padding-top: 16px; border-bottom: 1px solid var(--line) }
h1 { font-size: 22px; margin: 0 0 4px } h2 { font-size: 18px; margin: 28px 0 6px }
h3 { font-size: 15px; margin: 20px 0 4px }
.meta { color: var(--muted); margin: 2px 0 8px }
.note { background: #fff8c5; border: 1px solid #d4a72c66; padding: 6px 10px; border-radius: 6px }
.chart { position: relative; height: 300px }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 20px }
figure { margin: 0 } figcaption { font-weight: 600; margin-bottom: 4px }
table { border-collapse: collapse; width: 100%; margin: 8px 0 }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid var(--line) }
th { background: var(--bg); font-weight: 600 } td.num, th.num { text-align: right }
tr.idle td { color: var(--muted) }
.own { font-size: 11px; background: #ddf4ff; border-radius: 4px; padding: 0 4px; margin-left: 4px }
select { font: inherit }
@media (max-width: 800px) { .pair { grid-template-columns: 1fr } }
`

const BODY = `
<header>
  <h1>hookmeter <span id="node-name"></span></h1>
  <p id="node-info" class="meta">loading node information…</p>
  <p id="node-features" class="meta"></p>
</header>
<main>
  <section>
    <h2>Overhead per tool (the study's Figure 2)</h2>
    <p class="meta">Total loop time per exec over the newest finished baseline run, in percent.
      One group per tool (a run's label, until tools are detected), one bar per condition, each
      from the newest finished run of that group and condition.</p>
    <p id="fig2-note" class="note" hidden></p>
    <div class="chart"><canvas id="fig2" aria-label="overhead per tool"></canvas></div>
    <table id="fig2-table" hidden>
      <thead><tr><th>group</th><th>condition</th><th>run</th><th class="num">per exec</th>
        <th class="num">overhead</th><th>statistics</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section>
    <h2>Run</h2>
    <label>run <select id="run-picker" disabled></select></label>
    <p id="run-info" class="meta"></p>
    <p id="run-note" class="note" hidden></p>
    <div class="pair">
      <figure><figcaption>Exec latency (posix_spawn to waitpid)</figcaption>
        <div class="chart"><canvas id="latency" aria-label="exec latency"></canvas></div></figure>
      <figure><figcaption>Kernel exec phases</figcaption>
        <div class="chart"><canvas id="phases" aria-label="kernel exec phases"></canvas></div>
      </figure>
    </div>
    <h3>Per-hook cost per exec</h3>
    <p class="meta">Δrun_time_ns of each program over the loop, background-corrected, per exec.</p>
    <p id="cost-note" class="note" hidden></p>
    <div class="chart"><canvas id="cost" aria-label="per-hook cost per exec"></canvas></div>
  </section>
  <section>
    <h2>Live hooks</h2>
    <p id="hooks-info" class="meta">measuring…</p>
    <p id="hooks-note" class="note" hidden></p>
    <table id="hooks">
      <thead><tr><th>program</th><th>type</th><th>hook</th><th>owners</th>
        <th class="num">ns/run</th><th class="num">runs/s</th>
        <th class="num" title="run time over the window, as a share of one CPU">CPU</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
`

// Plain browser JS, kept free of template literals so that this file's own template stays plain.
const SCRIPT = `
const $ = (id) => document.getElementById(id)
const sig = (x) => Number(x.toPrecision(3)).toLocaleString('en')
const COLORS = { noPolicy: '#4e79a7', policy: '#e15759', other: '#4e79a7', own: '#9c9c9c',
  phases: ['#59a14f', '#f28e2b', '#b07aa1'] }
const PHASES = [['forkToExecve', 'fork → execve'], ['execveToExec', 'execve → exec'],
  ['execToExit', 'exec → exit']]

function duration(ns) {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '—'
  const a = Math.abs(ns)
  if (a < 1e3) return sig(ns) + ' ns'
  if (a < 1e6) return sig(ns / 1e3) + ' µs'
  if (a < 1e9) return sig(ns / 1e6) + ' ms'
  return sig(ns / 1e9) + ' s'
}
const share = (x) => (x > 0 && x < 1e-4 ? '< 0.01 %' : sig(x * 100) + ' %')
const percent = (x) => (x >= 0 ? '+' : '') + x.toFixed(1) + ' %'
const owners = (list) =>
  list.length ? list.map((o) => o.comm + '[' + o.pid + ']').join(', ') : 'no owner'
const runName = (r) =>
  '#' + r.id + ' ' + (r.label || 'unlabelled') + ' / ' + (r.condition || 'no condition')

function note(id, text) {
  $(id).textContent = text || ''
  $(id).hidden = !text
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } })
  const body = await res.json().catch(() => null)
  if (!res.ok) {
    throw new Error((body && body.error && body.error.message) || path + ': ' + res.status)
  }
  return body
}

function cells(row, values) {
  for (const [text, cls] of values) {
    const td = row.insertCell()
    td.textContent = text
    if (cls) td.className = cls
  }
  return row
}

Chart.defaults.animation = false
Chart.defaults.maintainAspectRatio = false
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily

const charts = {}
const axis = (title) => ({ title: { display: true, text: title } })
const tooltip = (label) => ({ plugins: { tooltip: { callbacks: { label: label } } } })
function chart(id, type, x, y, extra) {
  const options = Object.assign({ scales: { x: axis(x), y: axis(y) } }, extra)
  charts[id] = new Chart($(id), { type: type, data: { labels: [], datasets: [] }, options })
}
chart('fig2', 'bar', 'tool', 'overhead over baseline (%)', tooltip((c) => {
  const r = c.dataset.runs[c.dataIndex]
  return c.dataset.label + ': ' + percent(c.raw) + ' (run #' + r.id + ', ' +
    duration(r.wallNs / r.iterations) + ' per exec)'
}))
chart('latency', 'bar', 'latency (upper bound of bucket, log scale)', 'execs')
chart('phases', 'line', 'phase duration (upper bound of bucket, log scale)', 'execs')
chart('cost', 'bar', 'ns per exec', 'program · owner', Object.assign({ indexAxis: 'y' },
  tooltip((c) => {
    const x = c.dataset.hooks[c.dataIndex]
    return duration(x.nsPerExec) + ' per exec · ' + sig(x.runsPerExec) + ' runs per exec · ' +
      x.hook
  })))

// Shows or hides a chart's box and draws the data into it.
function draw(id, labels, datasets, height) {
  const chart = charts[id]
  const box = chart.canvas.parentElement
  box.hidden = labels.length === 0
  if (height) box.style.height = height + 'px'
  if (!box.hidden) chart.resize()
  chart.data.labels = labels
  chart.data.datasets = datasets
  chart.update()
}

async function loadNode() {
  try {
    const n = await getJson('/v1/node')
    document.title = 'hookmeter · ' + n.node
    $('node-name').textContent = '· ' + n.node
    const stats = n.statsMode === 'off' ? 'off between runs' : n.statsMode
    $('node-info').textContent = ['kernel ' + n.kernel.release + ' (' + n.kernel.arch + ')',
      'statistics ' + stats + ' (--stats ' + n.statsPolicy + ')', 'hookmeter ' + n.version]
      .join(' · ')
    const have = n.features.filter((f) => f.status === 'yes').map((f) => f.name)
    const lack = n.features.filter((f) => f.status !== 'yes').map((f) => f.name + ': ' + f.status)
    $('node-features').textContent =
      'features ' + have.join(', ') + (lack.length ? ' · missing ' + lack.join(', ') : '')
  } catch (err) {
    $('node-info').textContent = 'node information unavailable: ' + err.message
  }
}

async function refreshHooks() {
  try {
    const w = await getJson('/v1/hooks?window=2s')
    const body = $('hooks').tBodies[0]
    body.replaceChildren()
    for (const h of w.hooks) {
      const row = cells(body.insertRow(), [[h.fullName || h.name], [h.type], [h.hook],
        [owners(h.owners)], [h.nsPerRun === null ? '—' : sig(h.nsPerRun), 'num'],
        [sig(h.runsPerSecond), 'num'], [share(h.cpuShare), 'num']])
      row.cells[0].title = 'program ' + h.progId
      if (h.name.startsWith('hm_')) {
        row.cells[0].insertAdjacentHTML('beforeend', '<span class=own>hookmeter</span>')
      }
      if (h.runs === 0) row.className = 'idle'
    }
    $('hooks-info').textContent = w.hooks.length + ' programs over ' + sig(w.windowNs / 1e9) +
      ' s · statistics ' + w.statsMode + ' · ' + w.cpus + ' CPUs · updated ' +
      new Date().toLocaleTimeString()
    note('hooks-note', w.hooks.length ? '' : 'No eBPF programs are loaded on this node.')
  } catch (err) {
    note('hooks-note', 'Live hooks unavailable: ' + err.message)
  }
}

// Figure 2 from the run list alone: a summary has wallNs and iterations.
function drawFigure2(runs) {
  const done = runs.filter((r) => r.status === 'done' && r.wallNs > 0 && r.iterations > 0)
  const perExec = (r) => r.wallNs / r.iterations
  const base = done.find((r) => r.condition === 'baseline')
  const groups = new Map()
  let otherBinary = 0
  for (const r of done) {
    if (r.condition !== 'no-policy' && r.condition !== 'policy') continue
    // a run of another binary has another cost per exec: it is not an overhead over this baseline
    if (base && r.binary !== base.binary) {
      otherBinary++
      continue
    }
    const g = r.label || 'unlabelled'
    if (!groups.has(g)) groups.set(g, {})
    groups.get(g)[r.condition] ??= r
  }
  const labels = base ? [...groups.keys()].sort() : []
  const bars = (condition, label, color) => {
    const picked = labels.map((g) => groups.get(g)[condition] || null)
    return { label: label, backgroundColor: color, maxBarThickness: 90, runs: picked,
      data: picked.map((r) => (r ? (perExec(r) / perExec(base)) * 100 - 100 : null)) }
  }
  const datasets = base ? [bars('no-policy', 'no policy', COLORS.noPolicy),
    bars('policy', 'policy', COLORS.policy)] : []
  draw('fig2', labels, datasets)

  const table = $('fig2-table')
  table.tBodies[0].replaceChildren()
  table.hidden = !base
  if (base) {
    const rows = [['baseline', base, null]]
    for (const ds of datasets) {
      ds.runs.forEach((r, i) => r && rows.push([labels[i], r, ds.data[i]]))
    }
    for (const [group, r, overhead] of rows) {
      cells(table.tBodies[0].insertRow(), [[group], [r.condition], ['#' + r.id],
        [duration(perExec(r)), 'num'], [overhead === null ? 'baseline' : percent(overhead), 'num'],
        [r.statsMode]])
    }
  }

  const picked = datasets.flatMap((ds) => ds.runs.filter(Boolean))
  const mixed = picked.some((r) => r.statsMode !== base.statsMode)
  if (!done.length) {
    note('fig2-note', 'No finished runs yet. Start a run with condition "baseline" (no tool), ' +
      'then "no-policy" and "policy" runs labelled with the tool: POST /v1/bench/micro.')
  } else if (!base) {
    note('fig2-note', 'No baseline run: overhead is measured against a finished run with ' +
      'condition "baseline" (no tool running). Start one: POST /v1/bench/micro.')
  } else if (!labels.length) {
    note('fig2-note', 'Baseline run #' + base.id + ' is there; no "no-policy" or "policy" run yet.')
  } else if (otherBinary) {
    note('fig2-note', otherBinary + ' run(s) of another binary than the baseline (' + base.binary +
      ') are left out.')
  } else if (mixed) {
    note('fig2-note', 'These runs were taken with different statistics modes; overheads that ' +
      'mix modes include different costs of statistics.')
  } else {
    note('fig2-note', '')
  }
}

// Per-bucket counts from cumulative buckets; values above the last bound go to an overflow bucket.
function perBucket(h) {
  const counts = h.buckets.map((c, i) => c - (i ? h.buckets[i - 1] : 0))
  counts.push(h.count - (h.buckets.length ? h.buckets[h.buckets.length - 1] : 0))
  return counts
}

// Bucket labels and counts, trimmed to the buckets in use (one empty bucket kept either side).
function histogramData(hists) {
  const le = hists[0].le
  const labels = le.map((s) => '≤ ' + duration(s * 1e9))
  labels.push('> ' + duration(le[le.length - 1] * 1e9))
  const counts = hists.map(perBucket)
  const used = labels.map((_, i) => counts.some((c) => c[i] > 0))
  if (!used.includes(true)) return { labels: [], counts: hists.map(() => []) }
  const start = Math.max(0, used.indexOf(true) - 1)
  // the overflow bucket only when something fell into it
  const end = used[le.length] ? le.length + 1 : Math.min(le.length, used.lastIndexOf(true) + 2)
  return { labels: labels.slice(start, end), counts: counts.map((c) => c.slice(start, end)) }
}

let detailSeq = 0
async function showRun(id) {
  const seq = ++detailSeq
  let run = null
  try {
    run = await getJson('/v1/runs/' + id)
  } catch (err) {
    note('run-note', 'Run #' + id + ' unavailable: ' + err.message)
  }
  if (seq !== detailSeq) return
  const r = run && run.run
  $('run-info').textContent = r ? [runName(r), r.iterations + ' × ' + [r.binary].concat(r.args)
    .join(' '), 'total ' + duration(r.wallNs), 'p50 ' + duration(run.latencyNs.p50),
    'statistics ' + r.statsMode, 'started ' + new Date(r.startedAt).toLocaleString()].join(' · ')
    : ''
  const h = run && run.histograms
  if (run) note('run-note', h ? '' : 'This run has no histograms (stored by an older hookmeter).')

  const lat = h ? histogramData([h.latency]) : { labels: [], counts: [[]] }
  draw('latency', lat.labels, [{ label: 'execs', data: lat.counts[0],
    backgroundColor: COLORS.other, barPercentage: 1, categoryPercentage: 1 }])
  const ph = h ? histogramData(PHASES.map(([k]) => h.phases[k])) : { labels: [], counts: [] }
  draw('phases', ph.labels, PHASES.map(([, name], i) => ({ label: name, data: ph.counts[i] || [],
    borderColor: COLORS.phases[i], backgroundColor: COLORS.phases[i], pointRadius: 2 })))

  const hooks = run ? [...run.hooks].sort((a, b) => b.nsPerExec - a.nsPerExec).slice(0, 25) : []
  const side = (own, label, color) => ({ label: label, backgroundColor: color, grouped: false,
    hooks: hooks, data: hooks.map((x) => (x.own === own ? x.nsPerExec : null)) })
  draw('cost', hooks.map((x) => (x.fullName || x.name) + ' · ' + owners(x.owners)),
    [side(false, 'other programs', COLORS.other), side(true, "hookmeter's own", COLORS.own)],
    60 + 24 * hooks.length)
  note('cost-note', !run ? '' : !run.hooks.length ? 'No program ran during this run.'
    : run.hooks.length > hooks.length ? 'The ' + hooks.length + ' costliest of ' +
      run.hooks.length + ' programs.' : '')
  document.body.dataset.run = String(id)
}

let runsKey = null
let chosen = null
async function refreshRuns() {
  let runs
  try {
    runs = (await getJson('/v1/runs')).runs.sort((a, b) => b.id - a.id)
  } catch (err) {
    note('fig2-note', 'Runs unavailable: ' + err.message)
    return
  }
  const key = runs.map((r) => r.id + r.status).join()
  if (key === runsKey) return
  runsKey = key
  drawFigure2(runs)

  const done = runs.filter((r) => r.status === 'done')
  const picker = $('run-picker')
  const before = picker.value
  picker.replaceChildren(...done.map((r) => new Option(runName(r) + ' · ' + r.iterations +
    ' × ' + r.binary + ' · ' + new Date(r.createdAt).toLocaleString(), String(r.id))))
  picker.disabled = done.length === 0
  if (!done.length) {
    picker.replaceChildren(new Option('no finished runs', ''))
    note('run-note', 'No finished run to show yet.')
    return showRunNone()
  }
  picker.value = chosen !== null && done.some((r) => r.id === chosen) ? String(chosen)
    : String(done[0].id)
  if (picker.value !== before) await showRun(Number(picker.value))
}
function showRunNone() {
  for (const id of ['latency', 'phases', 'cost']) draw(id, [], [])
}

$('run-picker').addEventListener('change', (e) => {
  chosen = Number(e.target.value)
  showRun(chosen)
})

Promise.allSettled([loadNode(), refreshHooks(), refreshRuns()]).then(() => {
  window.hookmeterReady = true
  document.body.dataset.ready = 'true'
  // one request at a time: the next refresh is scheduled when the last one has ended
  const every = (ms, task) => setTimeout(() => task().then(() => every(ms, task)), ms)
  every(3000, refreshHooks)
  every(10000, refreshRuns)
})
`

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hookmeter</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
<script src="/assets/chart.js"></script>
</head>
<body>${BODY}<script type="module">${SCRIPT}</script>
</body>
</html>
`

/** The report page as one HTML document; the same string on every request. */
export function reportPage(): string {
  return PAGE
}
