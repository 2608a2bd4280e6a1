/**
 * The compiled eBPF objects. Imported as files so that `bun build --compile` embeds them; libbpf
 * needs a real path, so an embedded object is copied to a private temporary file first.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import featuresObject from '../bpf/hm_features.bpf.o' with { type: 'file' }
import probeObject from '../bpf/hm_probe.bpf.o' with { type: 'file' }

export const PROBE_OBJECT = probeObject
export const FEATURES_OBJECT = featuresObject

/** A path libbpf can open; dispose removes the temporary copy, if one was made. */
export interface ObjectFile extends Disposable {
  path: string
}

export async function objectFile(path: string): Promise<ObjectFile> {
  if (!path.startsWith('/$bunfs/') && !path.startsWith('B:/~BUN/')) {
    return { path, [Symbol.dispose]() {} }
  }
  const bytes = await Bun.file(path).bytes()
  const dir = mkdtempSync(join(tmpdir(), 'hookmeter-'))
  const out = join(dir, path.split('/').pop()!)
  writeFileSync(out, bytes, { mode: 0o600 })
  return { path: out, [Symbol.dispose]: () => rmSync(dir, { recursive: true, force: true }) }
}
