/**
 * Where a Worker's file is. In a `bun build --compile` binary, worker entry points are embedded
 * under /$bunfs/root/ by their path from the repository root; elsewhere they sit beside the
 * module that starts them.
 */
export function workerUrl(fromRoot: string, beside: URL): string | URL {
  return Bun.main.startsWith('/$bunfs/') ? `/$bunfs/root/${fromRoot}` : beside
}
