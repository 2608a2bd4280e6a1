/**
 * Which pod an eBPF object's owner runs in, from the Kubernetes API.
 *
 * procfs gives an owner's container id, and its pod UID where the cgroup path carries one
 * (`readCgroup` in procfs.ts). In a cluster, {@link PodResolver} keeps the pods of this node in
 * memory, listed once and then watched, and turns either id into the pod's name, namespace,
 * owner (the DaemonSet, for an ESST) and containers.
 *
 * It uses @kubernetes/client-node's `KubeConfig` (service-account token, re-read as it rotates;
 * cluster CA) and `ListWatch` (list, watch from the listed resourceVersion, relist after 410 Gone),
 * and adds three things of its own:
 *
 * - Requests go through Bun's `fetch` with the cluster's TLS settings passed as its `tls` option.
 *   The client hands them to undici as a `dispatcher`, which Bun's built-in stand-in for undici
 *   ignores: under Bun the client's own requests trust only the system CAs and fail against a
 *   cluster CA, and `skipTLSVerify` does nothing.
 * - The watch reader counts the lines it cannot use; the client's reader drops them silently.
 * - After an error `ListWatch` stops for good (it restarts by itself only after 410 Gone and
 *   after its own request timeout), so the resolver restarts it, with capped exponential backoff
 *   through an injectable delay.
 *
 * @module
 */
import { STATUS_CODES } from 'node:http'
import type { RequestOptions } from 'node:https'
import { isIPv6 } from 'node:net'
import { join } from 'node:path'

import {
  KubeConfig,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type V1Pod,
} from '@kubernetes/client-node'

/** Where the kubelet mounts a pod's service-account token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

/** First delay before restarting the list-and-watch after an error, in ms. */
export const INITIAL_RETRY_MS = 1_000

/** Longest delay between restarts, in ms. */
export const MAX_RETRY_MS = 30_000

/** Default bound on a list, and on a watch until its response headers arrive, in ms. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** How long the API server is asked to keep one watch open, in seconds. */
export const WATCH_TIMEOUT_S = 300

/**
 * Default time a watch may stay silent before it is taken for a dead connection and reopened,
 * in ms: past the server's own end of the watch, so that a healthy quiet watch ends first.
 */
export const DEFAULT_WATCH_IDLE_MS = (WATCH_TIMEOUT_S + 30) * 1_000

const PODS_PATH = '/api/v1/pods'

// The kubelet names a static pod's cgroup after the pod's own UID (a hash of its manifest); the
// API shows a mirror pod with another UID and carries the static one in this annotation.
const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror'

// OpenSSL's names for a server certificate that does not chain to a trusted CA.
const TLS_TRUST_CODE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/

const RUNTIME_PREFIX = /^[a-z][a-z0-9+.-]*:\/\//i

const WATCH_TYPES: ReadonlySet<string> = new Set([
  'ADDED',
  'MODIFIED',
  'DELETED',
  'BOOKMARK',
  'ERROR',
])

// A dropped line is quoted in the warning up to this many characters.
const QUOTED_LINE_CHARS = 200

export interface ContainerInfo {
  /** The runtime's container id, without its `containerd://`, `cri-o://` or `docker://`. */
  containerId: string
  name: string
  /** The image the runtime reports running (`status.image`). */
  image: string
}

export interface OwnerInfo {
  kind: string
  name: string
}

export interface PodInfo {
  pod: string
  namespace: string
  uid: string
  /** Name of the DaemonSet that controls the pod. */
  daemonSet?: string
  /** The controlling owner (else the first one listed): DaemonSet, ReplicaSet, Job, Node… */
  owner?: OwnerInfo
  /** Containers that have a container id: regular, then init, then ephemeral. */
  containers: ContainerInfo[]
}

export interface PodResolverStats {
  /** Pod lists that succeeded. */
  lists: number
  /** Watch events taken in: ADDED, MODIFIED, DELETED, BOOKMARK. */
  watchEvents: number
  /** Watch lines and listed items dropped: not JSON, not an event, or a pod without a UID. */
  dropped: number
  /** Lists and watches that failed, and watch ERROR events other than 410 Gone. */
  errors: number
  /** Restarts of the list-and-watch after an error. */
  restarts: number
}

/**
 * - `starting`: no list has finished yet.
 * - `synced`: the last request to the API succeeded.
 * - `degraded`: the last request failed; `reason` says why. Pods listed before stay resolvable.
 * - `closed`: {@link PodResolver.close} was called.
 */
export type PodResolverState = 'starting' | 'synced' | 'degraded' | 'closed'

export interface PodResolverStatus {
  state: PodResolverState
  /** Why the resolver is degraded: the failed call, the HTTP status or network error, the fix. */
  reason?: string
  /** Pods of this node the resolver knows. */
  pods: number
  nodeName: string
  /** The API server's address. */
  server: string
}

/** The agent logger's `warn`, or anything shaped like it. */
export type WarnFn = (msg: string, fields: Record<string, unknown>) => void

export interface PodResolverOptions {
  /** This node's name. Default `env.NODE_NAME` (set it from the downward API's spec.nodeName). */
  nodeName?: string
  /** Environment to read. Default `process.env`. */
  env?: Record<string, string | undefined>
  /** Told once per distinct failure or kind of dropped line. */
  onWarn?: WarnFn
  /** A ready KubeConfig to use instead of the in-cluster one (the test's fake server, a CLI). */
  kubeConfig?: KubeConfig
  /** Directory holding `token` and `ca.crt`. Default {@link SERVICE_ACCOUNT_DIR}. */
  serviceAccountDir?: string
  /** Waits before each restart and reconnect. Default: an unref'd timer. */
  delayFn?: (ms: number) => Promise<void>
  /** Default {@link DEFAULT_REQUEST_TIMEOUT_MS}. */
  requestTimeoutMs?: number
  /** Default {@link DEFAULT_WATCH_IDLE_MS}. */
  watchIdleMs?: number
}

/** A request to the API server that failed, named by its call (`list pods`, `watch pods`). */
export class KubeApiError extends Error {
  override readonly name = 'KubeApiError'
  readonly call: string
  /** HTTP status, when the server answered. Named as ListWatch reads it (it relists on 410). */
  readonly statusCode: number | undefined
  /** The `reason` of the server's Status object (`Forbidden`, `Expired`…). */
  readonly reason: string | undefined
  /** The network or runtime error code, when there was no answer. */
  readonly code: string | undefined

  constructor(
    call: string,
    detail: string,
    options: { statusCode?: number; reason?: string; code?: string; cause?: unknown } = {}
  ) {
    super(`${call}: ${detail}`, { cause: options.cause })
    this.call = call
    this.statusCode = options.statusCode
    this.reason = options.reason
    this.code = options.code
  }
}

/** Whether this process runs in a Kubernetes pod: KUBERNETES_SERVICE_HOST is set. */
export function inCluster(env: Record<string, string | undefined> = process.env): boolean {
  return (env.KUBERNETES_SERVICE_HOST ?? '') !== ''
}

/**
 * The KubeConfig a pod uses to reach its API server: the KUBERNETES_SERVICE_HOST and _PORT of
 * `env`, over https, trusting `ca.crt` and sending `token` from `serviceAccountDir`; the token
 * file is read again as it rotates.
 *
 * This is what the client's `loadFromCluster()` builds, except that `loadFromCluster()` reads
 * `process.env` and a fixed directory, where this takes both as arguments.
 */
export function inClusterKubeConfig(
  env: Record<string, string | undefined> = process.env,
  serviceAccountDir: string = SERVICE_ACCOUNT_DIR
): KubeConfig {
  const host = env.KUBERNETES_SERVICE_HOST ?? ''
  if (host === '') throw new Error('in-cluster config: KUBERNETES_SERVICE_HOST is not set')
  const port = env.KUBERNETES_SERVICE_PORT ?? '443'

  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromClusterAndUser(
    {
      name: 'inCluster',
      server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
      caFile: join(serviceAccountDir, 'ca.crt'),
      skipTLSVerify: false,
    },
    {
      name: 'inClusterUser',
      authProvider: { name: 'tokenFile', config: { tokenFile: join(serviceAccountDir, 'token') } },
    }
  )
  return kubeConfig
}

interface PodEntry {
  info: PodInfo
  /** Keys of this pod in the UID index: its UID, and a static pod's own UID. */
  uids: string[]
  nameKey: string
}

/**
 * The pods of this node, by pod UID and by container id.
 *
 * Created with {@link PodResolver.fromEnv}, which starts at once: a list of the node's pods
 * (`fieldSelector=spec.nodeName=<node>`), then a watch from the listed resourceVersion. Failures
 * never reach the caller: the resolver reports each distinct one once through `onWarn`, says why
 * in {@link status}, keeps the pods it last knew, and restarts after INITIAL_RETRY_MS, doubling
 * up to MAX_RETRY_MS; a successful list or a watch event resets the delay.
 *
 * The service account needs `list` and `watch` on pods. Whoever creates the resolver closes it;
 * {@link close} ends the watch and any pending restart.
 */
export class PodResolver {
  readonly nodeName: string
  readonly server: string

  readonly #informer: ListWatch<V1Pod>
  readonly #onWarn: WarnFn | undefined
  readonly #delayFn: (ms: number) => Promise<void>
  readonly #closer = new AbortController()
  readonly #closed: Promise<void>
  readonly #ready: Promise<void>
  #markReady: () => void = () => {}

  readonly #byUid = new Map<string, PodEntry>()
  readonly #byContainer = new Map<string, PodEntry>()
  readonly #byName = new Map<string, PodEntry>()

  readonly #stats: PodResolverStats = {
    lists: 0,
    watchEvents: 0,
    dropped: 0,
    errors: 0,
    restarts: 0,
  }
  readonly #warned = new Set<string>()
  #state: PodResolverState = 'starting'
  #reason: string | undefined
  #retryMs = 0
  #restartPending = false

  /**
   * Starts a resolver for this node's pods: in-cluster credentials unless `kubeConfig` is given.
   * Throws only for what no retry can mend: not in a cluster and no kubeConfig, or no node name.
   *
   * Of a given kubeConfig, the server, CA, client certificate and key, `skipTLSVerify`,
   * `tlsServerName`, `proxyUrl` (as Bun's fetch takes it: http or https) and the token are
   * honoured; proxy environment variables are not, as the client does not honour them either.
   */
  static fromEnv(opts: PodResolverOptions = {}): PodResolver {
    const env = opts.env ?? process.env

    const nodeName = opts.nodeName ?? env.NODE_NAME ?? ''
    if (nodeName === '') {
      throw new Error(
        'pod resolver: node name unknown; set NODE_NAME from the downward API (spec.nodeName)'
      )
    }

    if (opts.kubeConfig === undefined && !inCluster(env)) {
      throw new Error('pod resolver: KUBERNETES_SERVICE_HOST is not set and no kubeConfig given')
    }
    const kubeConfig = opts.kubeConfig ?? inClusterKubeConfig(env, opts.serviceAccountDir)

    return new PodResolver(kubeConfig, nodeName, opts)
  }

  private constructor(kubeConfig: KubeConfig, nodeName: string, opts: PodResolverOptions) {
    this.nodeName = nodeName
    this.server = kubeConfig.getCurrentCluster()?.server ?? ''
    this.#onWarn = opts.onWarn
    this.#delayFn = opts.delayFn ?? unrefDelay
    this.#closed = new Promise((resolve) => {
      this.#closer.signal.addEventListener('abort', () => resolve(), { once: true })
    })
    this.#ready = new Promise((resolve) => (this.#markReady = resolve))

    const fieldSelector = `spec.nodeName=${nodeName}`
    const requestTimeoutMs = opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
    const watch = new PodWatch(kubeConfig, {
      closed: this.#closer.signal,
      connectTimeoutMs: requestTimeoutMs,
      idleMs: opts.watchIdleMs ?? DEFAULT_WATCH_IDLE_MS,
      // The informer watches once it has taken in the list: the first list is done.
      onStart: () => this.#markReady(),
      onConnected: () => this.#synced(),
      onEvent: () => {
        this.#stats.watchEvents++
        this.#retryMs = 0
      },
      onDropped: (why, line) => this.#dropped(why, line),
      onErrorEvent: (status) => this.#errorEvent(status),
    })
    const list = () => this.#list(kubeConfig, fieldSelector, requestTimeoutMs)

    // The informer's own delay (between clean reconnects) goes through delayFn too, so that a
    // test never sleeps.
    this.#informer = new ListWatch<V1Pod>(PODS_PATH, watch, list, false, undefined, fieldSelector, {
      delayFn: (ms) => this.#sleep(ms),
    })
    this.#informer.on('add', (pod) => this.#put(pod))
    this.#informer.on('update', (pod) => this.#put(pod))
    this.#informer.on('delete', (pod) => this.#remove(pod))
    this.#informer.on('error', (error) => this.#failed(error))

    void this.#informer.start()
  }

  /**
   * The pod with this UID, else the pod with a container of this id (with or without its
   * runtime prefix); null when neither is a pod of this node the resolver knows.
   */
  resolve(podUid?: string, containerId?: string): PodInfo | null {
    if (podUid !== undefined && podUid !== '') {
      const entry = this.#byUid.get(podUid.toLowerCase())
      if (entry !== undefined) return entry.info
    }

    if (containerId !== undefined && containerId !== '') {
      const entry = this.#byContainer.get(bareContainerId(containerId))
      if (entry !== undefined) return entry.info
    }

    return null
  }

  /** Resolves once the first list has succeeded or failed, or the resolver is closed. */
  ready(): Promise<void> {
    return this.#ready
  }

  status(): PodResolverStatus {
    const status: PodResolverStatus = {
      state: this.#state,
      pods: this.#byName.size,
      nodeName: this.nodeName,
      server: this.server,
    }
    if (this.#state === 'degraded' && this.#reason !== undefined) status.reason = this.#reason
    return status
  }

  stats(): PodResolverStats {
    return { ...this.#stats }
  }

  /** Ends the watch, any request in flight and any pending restart. A second call does nothing. */
  close(): void {
    if (this.#closer.signal.aborted) return

    this.#state = 'closed'
    this.#reason = undefined
    this.#closer.abort()
    void this.#informer.stop()
    this.#markReady()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async #list(
    kubeConfig: KubeConfig,
    fieldSelector: string,
    timeoutMs: number
  ): Promise<KubernetesListObject<V1Pod>> {
    const call = 'list pods'
    const response = await clusterFetch(
      kubeConfig,
      call,
      PODS_PATH,
      new URLSearchParams({ fieldSelector }),
      AbortSignal.any([this.#closer.signal, AbortSignal.timeout(timeoutMs)]),
      timeoutMs
    )
    if (!response.ok) throw await responseError(call, response)

    const body: unknown = await response.json().catch((cause: unknown) => {
      throw new KubeApiError(call, 'the response is not JSON', { cause })
    })
    if (!isRecord(body) || !Array.isArray(body.items)) {
      throw new KubeApiError(call, 'the response is not a list (no items)')
    }

    // A pod without a UID cannot be indexed; the informer would file it by name regardless.
    const items: V1Pod[] = []
    for (const item of body.items) {
      if (podKeys(item) !== undefined) items.push(item as V1Pod)
      else this.#dropped('listed item is not a pod with a name and UID', JSON.stringify(item))
    }

    this.#stats.lists++
    this.#retryMs = 0
    this.#synced()

    const resourceVersion = isRecord(body.metadata) ? body.metadata.resourceVersion : undefined
    return {
      metadata: { resourceVersion: typeof resourceVersion === 'string' ? resourceVersion : '' },
      items,
    }
  }

  #put(pod: V1Pod): void {
    const keys = podKeys(pod)
    if (keys === undefined) return
    const info = podInfo(pod, keys)

    // Same namespace and name may be a new pod (a StatefulSet's, after a relist): drop the old.
    const previous = this.#byName.get(keys.nameKey)
    if (previous !== undefined) this.#unindex(previous)

    const entry: PodEntry = { info, uids: [keys.uid], nameKey: keys.nameKey }
    const mirrorOf = pod.metadata?.annotations?.[MIRROR_ANNOTATION]
    if (typeof mirrorOf === 'string' && mirrorOf !== '' && mirrorOf !== keys.uid) {
      entry.uids.push(mirrorOf.toLowerCase())
    }

    this.#byName.set(keys.nameKey, entry)
    for (const uid of entry.uids) this.#byUid.set(uid, entry)
    for (const container of info.containers) this.#byContainer.set(container.containerId, entry)
  }

  #remove(pod: V1Pod): void {
    const keys = podKeys(pod)
    if (keys === undefined) return
    const entry = this.#byName.get(keys.nameKey)
    if (entry !== undefined) this.#unindex(entry)
  }

  #unindex(entry: PodEntry): void {
    if (this.#byName.get(entry.nameKey) === entry) this.#byName.delete(entry.nameKey)
    for (const uid of entry.uids) {
      if (this.#byUid.get(uid) === entry) this.#byUid.delete(uid)
    }
    for (const container of entry.info.containers) {
      if (this.#byContainer.get(container.containerId) === entry) {
        this.#byContainer.delete(container.containerId)
      }
    }
  }

  #synced(): void {
    if (this.#closer.signal.aborted) return
    this.#state = 'synced'
    this.#reason = undefined
  }

  #failed(error: unknown): void {
    if (this.#closer.signal.aborted) return

    const failure =
      error instanceof KubeApiError
        ? error
        : new KubeApiError('list and watch pods', errorDetail(error), {
            code: errorCode(error),
            cause: error,
          })
    this.#stats.errors++
    this.#state = 'degraded'
    this.#reason = failure.message
    this.#warnOnce(
      `failure|${failure.call}|${failure.statusCode ?? failure.code ?? failure.message}`,
      'kubernetes api request failed; pods resolve as last listed',
      definedFields({
        call: failure.call,
        status: failure.statusCode,
        code: failure.code,
        error: failure.message,
        node: this.nodeName,
      })
    )

    this.#scheduleRestart()
    this.#markReady()
  }

  #scheduleRestart(): void {
    if (this.#restartPending) return
    this.#restartPending = true

    this.#retryMs =
      this.#retryMs === 0 ? INITIAL_RETRY_MS : Math.min(this.#retryMs * 2, MAX_RETRY_MS)
    void this.#sleep(this.#retryMs)
      .then(() => {
        this.#restartPending = false
        if (this.#closer.signal.aborted) return
        this.#stats.restarts++
        return this.#informer.start()
      })
      .catch((error: unknown) => this.#failed(error))
  }

  #dropped(why: string, line: string): void {
    this.#stats.dropped++
    this.#warnOnce(`dropped|${why}`, 'pod list or watch dropped what it could not use', {
      why,
      line: line.length > QUOTED_LINE_CHARS ? `${line.slice(0, QUOTED_LINE_CHARS)}…` : line,
      node: this.nodeName,
    })
  }

  #errorEvent(status: Record<string, unknown>): void {
    // 410 Gone only says the watch's resourceVersion has expired; the informer relists.
    if (status.code === 410) return

    this.#stats.errors++
    this.#warnOnce(
      `event|${String(status.code)}|${String(status.reason)}`,
      'pod watch error event',
      {
        code: status.code,
        reason: status.reason,
        message: status.message,
        node: this.nodeName,
      }
    )
  }

  #warnOnce(key: string, msg: string, fields: Record<string, unknown>): void {
    if (this.#warned.has(key)) return
    this.#warned.add(key)
    this.#onWarn?.(msg, fields)
  }

  // A wait that close() cuts short, whatever delayFn does.
  #sleep(ms: number): Promise<void> {
    return Promise.race([this.#delayFn(ms), this.#closed])
  }
}

interface PodWatchHooks {
  /** Aborted by close(): no request starts after it, and the open one ends. */
  closed: AbortSignal
  connectTimeoutMs: number
  idleMs: number
  onStart(): void
  onConnected(): void
  onEvent(): void
  onDropped(why: string, line: string): void
  onErrorEvent(status: Record<string, unknown>): void
}

/**
 * The client's `Watch`, reimplemented over Bun's fetch: TLS settings applied, unusable lines
 * counted, a silent connection reopened after `idleMs`, and no request once closed.
 *
 * It returns its AbortController at once rather than after the response headers, so that the
 * informer's stop() also reaches a watch still connecting.
 */
class PodWatch extends Watch {
  readonly #hooks: PodWatchHooks

  constructor(kubeConfig: KubeConfig, hooks: PodWatchHooks) {
    super(kubeConfig)
    this.#hooks = hooks
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void
  ): Promise<AbortController> {
    const controller = new AbortController()
    this.#hooks.onStart()
    void this.#run(path, queryParams, callback, once(done), controller)
    return controller
  }

  async #run(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
    controller: AbortController
  ): Promise<void> {
    const call = 'watch pods'
    const hooks = this.#hooks
    const signal = AbortSignal.any([controller.signal, hooks.closed])
    let timer: ReturnType<typeof setTimeout> | undefined
    const arm = (ms: number, reason: () => Error) => {
      clearTimeout(timer)
      timer = setTimeout(() => controller.abort(reason()), ms)
      timer.unref()
    }

    // After close() the informer may still come back from its own reconnect delay.
    if (hooks.closed.aborted) return done(null)

    const params = new URLSearchParams({ watch: 'true' })
    for (const [key, value] of Object.entries(queryParams)) {
      if (value !== undefined) params.set(key, String(value))
    }
    // Bookmarks keep a quiet watch's resourceVersion current, so a reconnect need not relist.
    params.set('allowWatchBookmarks', 'true')
    params.set('timeoutSeconds', String(WATCH_TIMEOUT_S))

    try {
      arm(
        hooks.connectTimeoutMs,
        () => new KubeApiError(call, `no response within ${hooks.connectTimeoutMs} ms`)
      )
      const response = await clusterFetch(
        this.config,
        call,
        path,
        params,
        signal,
        hooks.connectTimeoutMs
      )
      if (response.status !== 200) throw await responseError(call, response)
      hooks.onConnected()

      // A TimeoutError is what the informer reopens at once from the last resourceVersion.
      const idle = () => new DOMException(`no data for ${hooks.idleMs} ms`, 'TimeoutError')
      arm(hooks.idleMs, idle)
      if (response.body === null) return done(null)
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      let pending = ''
      for (;;) {
        const chunk = await reader.read()
        if (chunk.done) break
        arm(hooks.idleMs, idle)

        pending += chunk.value
        let newline = pending.indexOf('\n')
        while (newline >= 0) {
          this.#line(pending.slice(0, newline), callback)
          pending = pending.slice(newline + 1)
          newline = pending.indexOf('\n')
        }
      }
      this.#line(pending, callback)
      done(null)
    } catch (error) {
      // Aborted by one of the timers above: report it. By stop() or close(): a clean end.
      const reason: unknown = controller.signal.reason
      const timedOut =
        reason instanceof KubeApiError ||
        (reason instanceof DOMException && reason.name === 'TimeoutError')
      if (controller.signal.aborted && timedOut) done(reason)
      else if (signal.aborted) done(null)
      else done(error)
    } finally {
      clearTimeout(timer)
    }
  }

  #line(line: string, callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void) {
    if (line.trim() === '') return

    let event: unknown
    try {
      event = JSON.parse(line)
    } catch {
      return this.#hooks.onDropped('line is not JSON', line)
    }

    const why = unusableEvent(event)
    if (why !== undefined) return this.#hooks.onDropped(why, line)
    const { type, object } = event as { type: string; object: Record<string, unknown> }

    if (type === 'ERROR') this.#hooks.onErrorEvent(object)
    else this.#hooks.onEvent()
    callback(type, object, event)
  }
}

/**
 * A GET to the API server through Bun's fetch, with the headers (token) and TLS settings the
 * KubeConfig gives for its current cluster and user.
 */
async function clusterFetch(
  kubeConfig: KubeConfig,
  call: string,
  path: string,
  params: URLSearchParams,
  signal: AbortSignal,
  timeoutMs: number
): Promise<Response> {
  const cluster = kubeConfig.getCurrentCluster()
  if (cluster === null) throw new KubeApiError(call, 'the kubeconfig has no current cluster')

  const options: RequestOptions = {}
  try {
    await kubeConfig.applyToHTTPSOptions(options)
  } catch (cause) {
    throw new KubeApiError(call, `client config: ${errorDetail(cause)}`, {
      code: errorCode(cause),
      cause,
    })
  }

  const headers: Record<string, string> = { Accept: 'application/json' }
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value)
  }

  const tls: BunFetchRequestInitTLS = {}
  if (options.ca !== undefined) tls.ca = options.ca
  if (options.cert !== undefined) tls.cert = options.cert
  if (options.key !== undefined) tls.key = options.key as BunFetchRequestInitTLS['key']
  if (options.rejectUnauthorized !== undefined) tls.rejectUnauthorized = options.rejectUnauthorized
  if (options.servername !== undefined) tls.serverName = options.servername

  const url = new URL(cluster.server.replace(/\/+$/, '') + path)
  url.search = params.toString()
  try {
    // Proxy environment variables are not the cluster's concern; the client ignores them too.
    return await fetch(url, { headers, signal, tls, proxy: cluster.proxyUrl ?? false })
  } catch (cause) {
    if (signal.reason instanceof DOMException && signal.reason.name === 'TimeoutError') {
      throw new KubeApiError(call, `no response within ${timeoutMs} ms`, { code: 'TimeoutError' })
    }
    // A certificate the CA does not vouch for is the usual in-cluster mistake: name the CA.
    const code = errorCode(cause)
    const trustedCa = cluster.caFile ?? (cluster.caData ? 'the kubeconfig CA' : 'the system CAs')
    const trusted =
      code !== undefined && TLS_TRUST_CODE.test(code) ? ` (trusting ${trustedCa})` : ''
    throw new KubeApiError(call, `${url.host}: ${errorDetail(cause)}${trusted}`, { code, cause })
  }
}

/** The error for a response that is not a success, with the message of its Status body. */
async function responseError(call: string, response: Response): Promise<KubeApiError> {
  const text = await response.text().catch(() => '')
  let message: string | undefined
  let reason: string | undefined
  try {
    const body: unknown = JSON.parse(text)
    if (isRecord(body)) {
      if (typeof body.message === 'string') message = body.message
      if (typeof body.reason === 'string') reason = body.reason
    }
  } catch {
    message = text.trim().slice(0, QUOTED_LINE_CHARS) || undefined
  }

  const statusText = response.statusText || STATUS_CODES[response.status] || 'error'
  let detail = `${response.status} ${statusText}`
  if (message !== undefined) detail += `: ${message}`
  if (response.status === 401) detail += '; the service-account token was not accepted'
  if (response.status === 403) detail += '; the service account needs list and watch on pods'

  return new KubeApiError(call, detail, { statusCode: response.status, reason })
}

/** Why a parsed watch line is no event the resolver can take; undefined when it is one. */
function unusableEvent(event: unknown): string | undefined {
  if (!isRecord(event) || typeof event.type !== 'string') return 'line is not a watch event'
  if (!WATCH_TYPES.has(event.type)) return `unknown event type '${event.type}'`
  if (!isRecord(event.object)) return `${event.type} event has no object`
  if (event.type === 'ERROR' || event.type === 'BOOKMARK') return undefined
  if (podKeys(event.object) === undefined) return `${event.type} event is not a pod with a UID`
  return undefined
}

interface PodKeys {
  uid: string
  name: string
  namespace: string
  nameKey: string
}

function podKeys(pod: unknown): PodKeys | undefined {
  if (!isRecord(pod) || !isRecord(pod.metadata)) return undefined
  const { uid, name, namespace } = pod.metadata
  if (typeof uid !== 'string' || uid === '' || typeof name !== 'string' || name === '') {
    return undefined
  }
  const ns = typeof namespace === 'string' ? namespace : ''
  return { uid: uid.toLowerCase(), name, namespace: ns, nameKey: `${ns}/${name}` }
}

// Watch objects are parsed JSON, not checked against V1Pod; every field is read as unknown.
function podInfo(pod: V1Pod, keys: PodKeys): PodInfo {
  const info: PodInfo = { pod: keys.name, namespace: keys.namespace, uid: keys.uid, containers: [] }

  const owners = records(pod.metadata?.ownerReferences)
  const owner = owners.find((ref) => ref.controller === true) ?? owners[0]
  if (owner !== undefined && typeof owner.kind === 'string' && typeof owner.name === 'string') {
    info.owner = { kind: owner.kind, name: owner.name }
    if (owner.kind === 'DaemonSet') info.daemonSet = owner.name
  }

  const status = pod.status
  const statuses = [
    ...records(status?.containerStatuses),
    ...records(status?.initContainerStatuses),
    ...records(status?.ephemeralContainerStatuses),
  ]
  for (const container of statuses) {
    const id =
      typeof container.containerID === 'string' ? bareContainerId(container.containerID) : ''
    if (id === '') continue
    info.containers.push({
      containerId: id,
      name: typeof container.name === 'string' ? container.name : '',
      image: typeof container.image === 'string' ? container.image : '',
    })
  }

  return info
}

function bareContainerId(containerId: string): string {
  return containerId.replace(RUNTIME_PREFIX, '').toLowerCase()
}

function records(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter(isRecord) : []
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function definedFields(fields: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined))
}

function errorDetail(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  return typeof error.code === 'string' ? error.code : undefined
}

function once(done: (err: unknown) => void): (err: unknown) => void {
  let called = false
  return (err) => {
    if (called) return
    called = true
    done(err)
  }
}

function unrefDelay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
