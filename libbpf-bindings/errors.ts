import { errnoName, strerror } from './libc.ts'

/** A libbpf or bpf(2) call failed. Carries the call, the errno and what libbpf printed. */
export class LibbpfError extends Error {
  override readonly name: string = 'LibbpfError'
  readonly errnoName: string

  constructor(
    readonly call: string,
    readonly errno: number,
    readonly libbpfMessages: string[] = [],
    readonly subject?: string
  ) {
    const what = subject ? `${call} ${subject}` : call
    const detail = libbpfMessages.length ? `: ${libbpfMessages.slice(-3).join('; ')}` : ''
    super(`${what}: ${errnoName(errno)} (${strerror(errno)})${detail}`)
    this.errnoName = errnoName(errno)
  }
}

/** The kernel refused a program at load time; `log` holds the verifier's lines. */
export class VerifierError extends LibbpfError {
  override readonly name: string = 'VerifierError'

  constructor(
    call: string,
    errno: number,
    readonly log: string[],
    subject?: string
  ) {
    super(call, errno, log.filter((l) => l.trim()).slice(-2), subject)
  }
}

/** A kernel feature this call needs is missing or refused. */
export class NotSupportedError extends Error {
  override readonly name = 'NotSupportedError'

  constructor(
    readonly feature: string,
    reason: string,
    options?: { cause?: unknown }
  ) {
    super(`${feature} is not supported here: ${reason}`, options)
  }
}

/** A handle was used after close(). */
export class ClosedError extends Error {
  override readonly name = 'ClosedError'

  constructor(what: string) {
    super(`${what} is closed`)
  }
}
