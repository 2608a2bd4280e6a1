import { readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'

import { allowedBinaries } from '../allowlist.ts'
import { parseInteger, parseOptions, requirePrivilege, RuntimeError, UsageError } from '../cli.ts'
import { Agent, type StatsPolicy } from '../server/agent.ts'
import { createApp } from '../server/app.ts'
import { StoreError } from '../store.ts'
import { dataDir } from './bench.ts'
import { commonOptions, log } from './common.ts'

export const DEFAULT_PORT = 9464

function isLoopback(address: string): boolean {
  if (address === 'localhost') return true
  if (isIP(address) === 4) return address.startsWith('127.')
  if (isIP(address) === 6) return address === '::1'
  return false
}

function readToken(values: Record<string, unknown>): string | null {
  const file = values['token-file'] as string | undefined
  if (file) {
    let text: string
    try {
      const st = statSync(file)
      if (st.mode & 0o077)
        log.warn(`--token-file ${file} is readable by group or others; chmod 600 it`)
      text = readFileSync(file, 'utf8').trim()
    } catch (err) {
      throw new UsageError(`--token-file: cannot read ${file}: ${(err as Error).message}`)
    }
    if (text.length < 16)
      throw new UsageError(`--token-file: the token in ${file} is shorter than 16 characters`)
    return text
  }
  const env = process.env.HOOKMETER_TOKEN?.trim()
  if (env !== undefined && env !== '') {
    if (env.length < 16)
      throw new UsageError('HOOKMETER_TOKEN: the token is shorter than 16 characters')
    return env
  }
  return null
}

/** `hookmeter serve`: the node agent. Resolves once it has stopped (signal, or failure). */
export async function cmdServe(args: string[], stop: AbortSignal): Promise<number> {
  const { values } = parseOptions(args, {
    address: { type: 'string' },
    port: { type: 'string' },
    'data-dir': { type: 'string' },
    'token-file': { type: 'string' },
    stats: { type: 'string' },
    'allow-binary': { type: 'string', multiple: true },
    'delivery-execs': { type: 'string' },
  })
  const address = (values.address as string | undefined) ?? '127.0.0.1'
  if (address !== 'localhost' && !isIP(address)) {
    throw new UsageError(
      `--address: expected an IP address (such as 127.0.0.1, 0.0.0.0 or ::), got '${address}'`
    )
  }
  const port =
    values.port === undefined ? DEFAULT_PORT : parseInteger('--port', values.port, 0, 65535)
  const stats = (values.stats ?? 'always') as StatsPolicy
  if (stats !== 'always' && stats !== 'runs') {
    throw new UsageError(`--stats: expected always or runs, got '${values.stats}'`)
  }
  const deliveryExecs =
    values['delivery-execs'] === undefined
      ? 200
      : parseInteger('--delivery-execs', values['delivery-execs'], 0, 100_000)
  const token = readToken(values)
  if (!token && !isLoopback(address)) {
    throw new UsageError(
      `--address: without a token (--token-file or HOOKMETER_TOKEN) the agent binds to loopback only, got '${address}'`
    )
  }
  requirePrivilege()

  const t0 = performance.now()
  const dir = dataDir(values)
  let agent: Agent
  try {
    agent = await Agent.start({
      dataDir: dir,
      stats,
      ...commonOptions(values),
      allowed: allowedBinaries((values['allow-binary'] as string[] | undefined) ?? []),
      log,
      deliveryExecs,
    })
  } catch (err) {
    if (err instanceof StoreError) throw new RuntimeError(err.message)
    throw new RuntimeError(`cannot start the agent: ${(err as Error).message}`)
  }

  let ready = false
  const app = createApp({
    agent,
    token,
    log,
    ready: () => ready,
    loopbackOnly: isLoopback(address),
  })
  let server: ReturnType<typeof Bun.serve>
  try {
    server = Bun.serve({
      hostname: address,
      port,
      fetch: (req, srv) => app.fetch(req, { server: srv }),
      idleTimeout: 255,
    })
  } catch (err) {
    await agent.close()
    throw new RuntimeError(`cannot listen on ${address}:${port}: ${(err as Error).message}`)
  }
  ready = true
  void agent.probeFeatures()
  log.info('agent ready', {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${server.port}`,
    node: agent.nodeName,
    stats: agent.statsMode,
    readOnly: !token,
    startMs: +(performance.now() - t0).toFixed(1),
  })

  await new Promise<void>((resolve) =>
    stop.addEventListener('abort', () => resolve(), { once: true })
  )
  const t1 = performance.now()
  ready = false
  // stop listening, end the run (its event streams get their `end`), then drop what is left
  void server.stop(false)
  await agent.close()
  await Bun.sleep(50)
  server.stop(true)
  log.info('agent stopped', { stopMs: +(performance.now() - t1).toFixed(1) })
  return 0
}
