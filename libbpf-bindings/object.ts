import { ptr, read, toArrayBuffer } from 'bun:ffi'

import { ClosedError, LibbpfError, VerifierError } from './errors.ts'
import { bpf, logMark, logSince, pointerErrno } from './libbpf.ts'
import { PROG_TYPES } from './layout.ts'
import { MapFd } from './map.ts'

type Ptr = NonNullable<ReturnType<typeof bpf.bpf_object__open_file>>

const OPEN_OPTS_SIZE = 80

export interface OpenOptions {
  objectName?: string
  btfCustomPath?: string
}

const registry = new FinalizationRegistry<{ obj: Ptr; path: string }>((held) => {
  // A backstop only: correct code closes every object; this frees one that was forgotten.
  bpf.bpf_object__close(held.obj)
})

/**
 * An eBPF object file opened with libbpf. Open, choose programs (setAutoload), load, attach.
 * The caller must close() it (or hold it with `using`): close destroys every link attached
 * through it, then the object's programs and maps. Closing twice is a no-op.
 */
export class BpfObject implements Disposable {
  #obj: Ptr | null
  #loaded = false
  readonly #programs: BpfProgram[] = []
  readonly #maps: BpfMap[] = []
  readonly #links = new Set<BpfLink>()
  readonly name: string

  private constructor(
    obj: Ptr,
    readonly path: string
  ) {
    this.#obj = obj
    this.name = String(bpf.bpf_object__name(obj))

    for (
      let p = bpf.bpf_object__next_program(obj, null);
      p;
      p = bpf.bpf_object__next_program(obj, p)
    ) {
      this.#programs.push(new BpfProgram(this, p))
    }
    for (let m = bpf.bpf_object__next_map(obj, null); m; m = bpf.bpf_object__next_map(obj, m)) {
      this.#maps.push(new BpfMap(this, m))
    }
    registry.register(this, { obj, path }, this)
  }

  /**
   * Opens the object file at `path`: parses it, loads nothing yet. `objectName` fixes the name
   * libbpf derives global-data map names from (else the file name); `btfCustomPath` replaces the
   * kernel's BTF for CO-RE relocation.
   */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    const mark = logMark()
    const cPath = Buffer.from(`${path}\0`)
    const name = opts.objectName ? Buffer.from(`${opts.objectName}\0`) : null
    const btf = opts.btfCustomPath ? Buffer.from(`${opts.btfCustomPath}\0`) : null

    // struct bpf_object_open_opts of libbpf 1.1: sz, object_name, ..., btf_custom_path at 48
    const o = new Uint8Array(OPEN_OPTS_SIZE)
    const dv = new DataView(o.buffer)
    dv.setBigUint64(0, BigInt(OPEN_OPTS_SIZE), true)
    if (name) dv.setBigUint64(8, BigInt(ptr(name)), true)
    if (btf) dv.setBigUint64(48, BigInt(ptr(btf)), true)

    const obj = bpf.bpf_object__open_file(cPath, ptr(o))
    if (!obj) throw new LibbpfError('bpf_object__open_file', pointerErrno(), logSince(mark), path)
    return new BpfObject(obj, path)
  }

  get loaded(): boolean {
    return this.#loaded
  }

  get closed(): boolean {
    return this.#obj === null
  }

  /** @internal */
  raw(): Ptr {
    if (!this.#obj) throw new ClosedError(`object ${this.path}`)
    return this.#obj
  }

  programs(): readonly BpfProgram[] {
    return this.#programs
  }

  maps(): readonly BpfMap[] {
    return this.#maps
  }

  program(name: string): BpfProgram {
    const found = this.#programs.find((p) => p.name === name)
    if (!found) {
      const names = this.#programs.map((p) => p.name).join(', ')
      throw new Error(`object ${this.path} has no program ${name} (it has: ${names})`)
    }
    return found
  }

  map(name: string): BpfMap {
    const found = this.#maps.find((m) => m.name === name)
    if (!found) {
      const names = this.#maps.map((m) => m.name).join(', ')
      throw new Error(`object ${this.path} has no map ${name} (it has: ${names})`)
    }
    return found
  }

  /**
   * Creates the maps and loads the chosen programs into the kernel. A refusal by the verifier
   * throws VerifierError with the verifier's log; the object stays open and must still be closed.
   */
  load(): void {
    const mark = logMark()
    const rc = bpf.bpf_object__load(this.raw())
    if (rc < 0) {
      const messages = logSince(mark)
      const log = verifierLog(messages)
      if (log) throw new VerifierError('bpf_object__load', -rc, log, this.path)
      throw new LibbpfError('bpf_object__load', -rc, messages, this.path)
    }
    this.#loaded = true
  }

  /** @internal */
  track(link: BpfLink): void {
    this.#links.add(link)
  }

  /** @internal */
  untrack(link: BpfLink): void {
    this.#links.delete(link)
  }

  /** Detaches every link made through this object, then frees its programs and maps. */
  close(): void {
    const obj = this.#obj
    if (!obj) return
    for (const link of [...this.#links].reverse()) link.close()
    for (const map of this.#maps) map.close()
    this.#obj = null
    registry.unregister(this)
    bpf.bpf_object__close(obj)
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

function verifierLog(messages: string[]): string[] | null {
  const text = messages.join('\n')
  const begin = text.indexOf('-- BEGIN PROG LOAD LOG --')
  if (begin < 0) return null
  const end = text.indexOf('-- END PROG LOAD LOG --', begin)
  return text
    .slice(begin, end < 0 ? undefined : end)
    .split('\n')
    .slice(1)
    .filter((l) => l.trim())
}

/** One program of a BpfObject. Lives and dies with its object. */
export class BpfProgram {
  readonly name: string
  readonly sectionName: string

  constructor(
    private readonly object: BpfObject,
    private readonly prog: Ptr
  ) {
    this.name = String(bpf.bpf_program__name(prog))
    this.sectionName = String(bpf.bpf_program__section_name(prog))
  }

  get type(): number {
    this.object.raw()
    return bpf.bpf_program__type(this.prog)
  }

  get typeName(): string {
    return PROG_TYPES[this.type] ?? `type ${this.type}`
  }

  /** Whether load() loads this program; set before load. */
  get autoload(): boolean {
    this.object.raw()
    return bpf.bpf_program__autoload(this.prog)
  }

  set autoload(on: boolean) {
    this.object.raw()
    const rc = bpf.bpf_program__set_autoload(this.prog, on)
    if (rc < 0) throw new LibbpfError('bpf_program__set_autoload', -rc, [], this.name)
  }

  /** The program's fd once loaded (owned by the object). */
  get fd(): number {
    this.object.raw()
    const fd = bpf.bpf_program__fd(this.prog)
    if (fd < 0) throw new Error(`program ${this.name} is not loaded`)
    return fd
  }

  /**
   * Attaches the program where its section name says (tracepoint, raw_tracepoint, tp_btf, …).
   * The returned link is owned by the caller and also closed when the object closes.
   */
  attach(): BpfLink {
    this.object.raw()
    const mark = logMark()
    const link = bpf.bpf_program__attach(this.prog)
    if (!link) {
      throw new LibbpfError('bpf_program__attach', pointerErrno(), logSince(mark), this.name)
    }
    const out = new BpfLink(this.object, link, this.name)
    this.object.track(out)
    return out
  }
}

/**
 * An attachment of a program. close() detaches it (bpf_link__destroy); idempotent.
 */
export class BpfLink implements Disposable {
  #link: Ptr | null

  constructor(
    private readonly object: BpfObject,
    link: Ptr,
    readonly programName: string
  ) {
    this.#link = link
  }

  get fd(): number {
    if (!this.#link) throw new ClosedError(`link of ${this.programName}`)
    return bpf.bpf_link__fd(this.#link)
  }

  get closed(): boolean {
    return this.#link === null
  }

  close(): void {
    const link = this.#link
    if (!link) return
    this.#link = null
    this.object.untrack(this)
    bpf.bpf_link__destroy(link)
  }

  [Symbol.dispose](): void {
    this.close()
  }
}

/**
 * One map of a BpfObject. Before load its size and global-data contents can be set; after load
 * the MapFd operations work on the kernel map. Its fd is owned by the object.
 */
export class BpfMap {
  readonly name: string
  #fdMap: MapFd | null = null

  constructor(
    private readonly object: BpfObject,
    private readonly map: Ptr
  ) {
    this.name = String(bpf.bpf_map__name(map))
  }

  get type(): number {
    this.object.raw()
    return bpf.bpf_map__type(this.map)
  }

  get keySize(): number {
    return bpf.bpf_map__key_size(this.map)
  }

  get valueSize(): number {
    return bpf.bpf_map__value_size(this.map)
  }

  get maxEntries(): number {
    return bpf.bpf_map__max_entries(this.map)
  }

  /** Before load only. */
  set maxEntries(n: number) {
    this.object.raw()
    const rc = bpf.bpf_map__set_max_entries(this.map, n)
    if (rc < 0) throw new LibbpfError('bpf_map__set_max_entries', -rc, [], this.name)
  }

  /** A copy of a global-data map's contents (.data, .rodata, .bss) as libbpf holds them. */
  initialValue(): Uint8Array {
    this.object.raw()
    const size = new BigUint64Array(1)
    const data = bpf.bpf_map__initial_value(this.map, ptr(size))
    if (!data) throw new Error(`map ${this.name} has no initial value (not a global-data map)`)
    return new Uint8Array(toArrayBuffer(data, 0, Number(size[0]))).slice()
  }

  /** Before load only: the contents a global-data map is created with. */
  setInitialValue(bytes: Uint8Array): void {
    this.object.raw()
    const rc = bpf.bpf_map__set_initial_value(this.map, ptr(bytes), bytes.length)
    if (rc < 0) throw new LibbpfError('bpf_map__set_initial_value', -rc, [], this.name)
  }

  /** Kernel-side operations; after load. */
  get kernel(): MapFd {
    this.object.raw()
    if (!this.object.loaded) throw new Error(`map ${this.name}: object is not loaded`)
    if (!this.#fdMap) {
      const fd = bpf.bpf_map__fd(this.map)
      if (fd < 0) throw new Error(`map ${this.name} was not created`)
      this.#fdMap = new MapFd(
        fd,
        this.name,
        this.type,
        this.keySize,
        this.valueSize,
        this.maxEntries,
        false
      )
    }
    return this.#fdMap
  }

  /** @internal */
  close(): void {
    this.#fdMap?.close()
  }
}

export { read }
