import { afterAll, describe, expect, test } from 'bun:test'
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { createExecLoop, ExecLoopError } from '../agent/exec-loop.ts'

const tmp = mkdtempSync(join(tmpdir(), 'hm-exec-loop-'))

afterAll(() => rmSync(tmp, { recursive: true, force: true }))

describe('exec loop', () => {
  test('runs /usr/bin/true the requested number of times', async () => {
    using loop = createExecLoop({ binary: '/usr/bin/true', args: [], iterations: 200, warmup: 10 })
    const result = await loop.start()

    expect(result.iterations).toBe(200)
    expect(result.warmup).toBe(10)
    expect(result.latencyNs).toBeInstanceOf(Float64Array)
    expect(result.latencyNs.length).toBe(200)
    expect(result.latencyNs.every((ns) => ns > 0)).toBe(true)
    expect(result.failures).toBe(0)
    expect(result.firstFailure).toBeUndefined()
    expect(result.aborted).toBe(false)

    // The wall clock spans every counted exec and the loop around them, on the same clock.
    const sum = result.latencyNs.reduce((a, b) => a + b, 0)
    expect(result.wallNs).toBe(result.endNs - result.startNs)
    expect(Number(result.wallNs)).toBeGreaterThanOrEqual(sum * 0.9)
  })

  test('counts execs that exit non-zero as failures and reports the first status', async () => {
    using loop = createExecLoop({ binary: '/usr/bin/false', args: [], iterations: 5, warmup: 2 })
    const result = await loop.start()

    expect(result.iterations).toBe(5)
    expect(result.latencyNs.length).toBe(5)
    expect(result.failures).toBe(5)
    expect(result.firstFailure).toBe('/usr/bin/false exited with status 1')
  })

  test('rejects with ENOENT named for a missing binary', async () => {
    using loop = createExecLoop({
      binary: '/nonexistent/hm-missing',
      args: [],
      iterations: 3,
      warmup: 0,
    })
    const run = loop.start()

    await expect(run).rejects.toThrow(
      'posix_spawn /nonexistent/hm-missing: ENOENT (No such file or directory)'
    )
    const err = await run.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ExecLoopError)
    expect(err).toMatchObject({ call: 'posix_spawn', code: 'ENOENT', errno: 2 })
  })

  test('rejects with EACCES named for a file that is not executable', async () => {
    const file = join(tmp, 'not-executable')
    writeFileSync(file, '')
    chmodSync(file, 0o644)
    using loop = createExecLoop({ binary: file, args: [], iterations: 1, warmup: 0 })

    await expect(loop.start()).rejects.toThrow(`posix_spawn ${file}: EACCES (Permission denied)`)
  })

  test('passes args as argv, never through a shell', async () => {
    const dir = mkdtempSync(join(tmp, 'argv-'))
    const name = 'a b;c'
    using loop = createExecLoop({
      binary: '/usr/bin/touch',
      args: [join(dir, name)],
      iterations: 1,
      warmup: 0,
    })
    const result = await loop.start()

    expect(result.failures).toBe(0)
    expect(readdirSync(dir)).toEqual([name])
  })

  test('gives the child a fixed environment instead of the agent environment', async () => {
    const out = join(tmp, 'environ')

    // /proc/self in cp is cp itself, so the copy is the child's own environment.
    using loop = createExecLoop({
      binary: '/usr/bin/cp',
      args: ['/proc/self/environ', out],
      iterations: 1,
      warmup: 0,
    })
    const result = await loop.start()

    expect(result.failures).toBe(0)
    expect(readFileSync(out, 'utf8')).toBe('PATH=/usr/bin:/bin\0LC_ALL=C\0')
  })

  test('connects stdin, stdout and stderr to /dev/null', async () => {
    for (const fd of [0, 1, 2]) {
      const link = join(tmp, `fd${fd}`)

      // cp -P copies the /proc fd link itself, which names what the descriptor is open on.
      using loop = createExecLoop({
        binary: '/usr/bin/cp',
        args: ['-P', `/proc/self/fd/${fd}`, link],
        iterations: 1,
        warmup: 0,
      })
      const result = await loop.start()

      expect(result.failures).toBe(0)
      expect(readlinkSync(link)).toBe('/dev/null')
    }
  })

  test('stops early with aborted true when the signal fires', async () => {
    const controller = new AbortController()
    let calls = 0
    using loop = createExecLoop({
      binary: '/usr/bin/true',
      args: [],
      iterations: 5000,
      warmup: 0,
      signal: controller.signal,
      onProgress: (done) => {
        calls++
        if (done >= 50) controller.abort()
      },
    })
    const result = await loop.start()

    expect(result.aborted).toBe(true)
    expect(result.iterations).toBeGreaterThanOrEqual(50)
    expect(result.iterations).toBeLessThan(5000)
    expect(result.latencyNs.length).toBe(result.iterations)
    expect(calls).toBeGreaterThanOrEqual(1)
  })

  test('runs no exec when the signal has already fired', async () => {
    using loop = createExecLoop({
      binary: '/usr/bin/true',
      args: [],
      iterations: 100,
      warmup: 5,
      signal: AbortSignal.abort(),
    })
    const result = await loop.start()

    expect(result.aborted).toBe(true)
    expect(result.iterations).toBe(0)
    expect(result.warmup).toBe(0)
    expect(result.latencyNs.length).toBe(0)
    expect(result.wallNs).toBe(0n)
  })

  test('reports progress at most every 1 % and never past the total', async () => {
    const seen: [number, number][] = []
    using loop = createExecLoop({
      binary: '/usr/bin/true',
      args: [],
      iterations: 300,
      warmup: 20,
      onProgress: (done, total) => seen.push([done, total]),
    })
    await loop.start()

    expect(seen.length).toBeGreaterThanOrEqual(1)
    expect(seen.length).toBeLessThanOrEqual(101)
    expect(seen.every(([, total]) => total === 320)).toBe(true)
    expect(seen.at(-1)).toEqual([320, 320])
    const dones = seen.map(([done]) => done)
    expect(dones).toEqual([...dones].sort((a, b) => a - b))
  })

  test('reports the tid of a worker thread of this process before starting', async () => {
    using loop = createExecLoop({ binary: '/usr/bin/true', args: [], iterations: 3, warmup: 0 })
    const tid = await loop.spawnerTid

    expect(Number.isSafeInteger(tid)).toBe(true)
    expect(tid).toBeGreaterThan(0)
    expect(tid).not.toBe(process.pid)
    expect(existsSync(`/proc/${process.pid}/task/${tid}`)).toBe(true)

    const result = await loop.start()
    expect(result.spawnerTid).toBe(tid)
  })

  test('close twice is fine and a later start rejects', async () => {
    const loop = createExecLoop({ binary: '/usr/bin/true', args: [], iterations: 3, warmup: 0 })
    await loop.spawnerTid

    loop.close()
    loop.close()
    loop[Symbol.dispose]()

    await expect(loop.start()).rejects.toThrow('closed')
  })

  test('rejects invalid options before starting a worker', () => {
    const base = { args: [], iterations: 1, warmup: 0 }

    expect(() => createExecLoop({ ...base, binary: 'true' })).toThrow(TypeError)
    expect(() => createExecLoop({ ...base, binary: '/usr/bin/true', iterations: 0 })).toThrow(
      'iterations'
    )
    expect(() => createExecLoop({ ...base, binary: '/usr/bin/true', warmup: -1 })).toThrow('warmup')
    expect(() => createExecLoop({ ...base, binary: '/usr/bin/true', args: ['a\0b'] })).toThrow(
      'NUL'
    )
  })
})
