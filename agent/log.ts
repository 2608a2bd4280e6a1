/**
 * The agent's one logger. JSON lines (for the DaemonSet and anything that is not a terminal) or a
 * readable line on a terminal; always on stderr, so stdout carries only results.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error'

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 }

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  child(fields: Record<string, unknown>): Logger
}

export interface LoggerOptions {
  level?: Level
  format?: 'json' | 'text'
  write?: (line: string) => void
}

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value)
  if (value instanceof Error) return { message: value.message, name: value.name }
  return value
}

export function createLogger(opts: LoggerOptions = {}, base: Record<string, unknown> = {}): Logger {
  const envLevel = process.env.HOOKMETER_LOG_LEVEL as Level | undefined
  const level = opts.level ?? (envLevel && envLevel in ORDER ? envLevel : 'info')
  const envFormat = process.env.HOOKMETER_LOG_FORMAT
  const format =
    opts.format ??
    (envFormat === 'json' || envFormat === 'text'
      ? envFormat
      : process.stderr.isTTY
        ? 'text'
        : 'json')
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`))

  const emit = (lvl: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < ORDER[level]) return
    const all = { ...base, ...fields }
    if (format === 'json') {
      write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...all }, replacer))
      return
    }
    const extra = Object.entries(all)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v, replacer)}`)
      .join(' ')
    const tag = lvl === 'info' ? '' : `${lvl}: `
    write(`hookmeter: ${tag}${msg}${extra ? `  ${extra}` : ''}`)
  }

  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ level, format, write }, { ...base, ...fields }),
  }
}
