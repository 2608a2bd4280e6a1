import { StatsSession } from '../../libbpf-bindings/stats.ts'
import {
  interruptedExitCode,
  onCleanup,
  parseDuration,
  parseOptions,
  printableText,
  requirePrivilege,
} from '../cli.ts'
import { diffWindow, measureWindow, renderTable, sleep, snapshot } from '../hooks.ts'
import { takeInventory } from '../inventory.ts'

export async function cmdHooks(args: string[], stop: AbortSignal): Promise<number> {
  const { values } = parseOptions(args, {
    once: { type: 'boolean' },
    window: { type: 'string' },
    interval: { type: 'string' },
    json: { type: 'boolean' },
  })
  const windowMs =
    values.window === undefined ? 5000 : parseDuration('--window', values.window, 1000, 300_000)
  const intervalMs =
    values.interval === undefined ? 1000 : parseDuration('--interval', values.interval, 200, 60_000)
  requirePrivilege()

  const stats = StatsSession.open()
  onCleanup(() => stats.close())

  if (values.once || values.json) {
    const w = await measureWindow(windowMs, stats.mode, stop)
    // a window cut short by a signal is not the window asked for
    if (stop.aborted) return interruptedExitCode()
    process.stdout.write(
      values.json ? `${JSON.stringify(w)}\n` : `${printableText(renderTable(w))}\n`
    )
    return 0
  }

  // live view: the first window is drawn only after a baseline snapshot a full interval old
  process.stdout.write('\x1b[?25l')
  onCleanup(() => void process.stdout.write('\x1b[?25h\n'))
  let prev = snapshot()
  process.stdout.write(`\x1b[2J\x1b[Hhookmeter hooks: taking a baseline (${intervalMs} ms)…`)
  while (!stop.aborted) {
    await sleep(intervalMs, stop)
    if (stop.aborted) break
    try {
      const cur = snapshot()
      const w = diffWindow(prev, cur, takeInventory(), stats.mode)
      prev = cur
      process.stdout.write(`\x1b[2J\x1b[H${printableText(renderTable(w))}\n\n(ctrl-c to quit)`)
    } catch (err) {
      // a program or process that vanished mid-read: the next refresh sees a settled host
      process.stdout.write(
        `\x1b[2J\x1b[Hhookmeter hooks: refresh failed (${(err as Error).message}); retrying`
      )
    }
  }
  // quitting the live view is how it ends, not an interruption
  return 0
}
