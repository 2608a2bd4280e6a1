// No Kubernetes API server can run here; these tests talk real HTTP to a fake API server that
// the test starts on 127.0.0.1. The fake speaks TLS with a test CA (test/fixtures/k8s), checks
// the bearer token, filters pods by the spec.nodeName field selector, and streams watch events
// as newline-delimited JSON, as kube-apiserver does; every failure it gives is scripted by the
// test. Restart delays go through an injected delayFn that records them and does not sleep.
import { afterAll, afterEach, describe, expect, test } from 'bun:test'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { KubeConfig } from '@kubernetes/client-node'

import {
  inCluster,
  inClusterKubeConfig,
  INITIAL_RETRY_MS,
  MAX_RETRY_MS,
  PodResolver,
  type PodResolverOptions,
} from '../agent/k8s.ts'

const FIXTURES = join(import.meta.dir, 'fixtures', 'k8s')
const NODE = 'node-1'
const SELECTOR = `spec.nodeName=${NODE}`
// Written without a newline, as the kubelet writes a projected token.
const TOKEN = 'hm-test.service-account.token'

type Pod = {
  metadata: Record<string, unknown> & { name: string; namespace: string; uid: string }
  spec: { nodeName: string } & Record<string, unknown>
  status?: Record<string, unknown>
} & Record<string, unknown>

const FIXTURE_PODS: Pod[] = JSON.parse(readFileSync(join(FIXTURES, 'pods.json'), 'utf8'))

function fixturePod(name: string): Pod {
  const pod = FIXTURE_PODS.find((p) => p.metadata.name === name)
  if (pod === undefined) throw new Error(`no fixture pod ${name}`)
  return structuredClone(pod)
}

const TETRAGON = fixturePod('tetragon-x7k2p')
const FALCO = fixturePod('falco-9qv4d')
const COREDNS = fixturePod('coredns-6f6b679f8f-q8zlm')
const APISERVER = fixturePod('kube-apiserver-node-1')
const KUBEARMOR_NODE_2 = fixturePod('kubearmor-bpf-containerd-98c2c-tw4kd')

const hex64 = (pair: string) => pair.repeat(32)

/** A pod of node-1 that the list does not return, for the watch to bring. */
function newPod(name: string, uid: string, containerId?: string): Pod {
  const pod: Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'tracee',
      uid,
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'DaemonSet', name, controller: true }],
    },
    spec: { nodeName: NODE, containers: [{ name: 'tracee', image: 'aquasec/tracee:0.24.1' }] },
    status: { phase: 'Pending' },
  }
  if (containerId !== undefined) {
    pod.status = {
      phase: 'Running',
      containerStatuses: [
        { name: 'tracee', image: 'docker.io/aquasec/tracee:0.24.1', containerID: containerId },
      ],
    }
  }
  return pod
}

interface SeenRequest {
  path: string
  params: URLSearchParams
  /** The query exactly as sent. */
  search: string
  authorization: string | null
}

interface Failure {
  status: number
  reason: string
  message: string
}

interface OpenWatch {
  node: string | undefined
  stream: ReadableStreamDefaultController<Uint8Array>
}

const encoder = new TextEncoder()

function statusBody(failure: Failure): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: failure.message,
    reason: failure.reason,
    code: failure.status,
  })
}

const FORBIDDEN: Failure = {
  status: 403,
  reason: 'Forbidden',
  message:
    'pods is forbidden: User "system:serviceaccount:hookmeter:hookmeter" cannot list resource ' +
    '"pods" in API group "" at the cluster scope',
}

const INTERNAL: Failure = {
  status: 500,
  reason: 'InternalError',
  message: 'Internal error occurred: etcd leader changed',
}

/** A fake kube-apiserver for GET /api/v1/pods, listed and watched. */
class FakeApiServer {
  readonly requests: SeenRequest[] = []
  /** The cluster's pods, by UID, on every node. */
  readonly pods = new Map<string, Pod>()
  /** Given instead of the next lists, in order. */
  readonly listFailures: Failure[] = []
  /** Given instead of every list while set. */
  listAlways: Failure | undefined
  /** Given instead of the next watches, in order. */
  readonly watchFailures: Failure[] = []
  readonly open = new Set<OpenWatch>()
  resourceVersion = 1000
  readonly #server: ReturnType<typeof Bun.serve>

  constructor(opts: { tls: boolean }) {
    for (const pod of FIXTURE_PODS) this.pods.set(pod.metadata.uid, structuredClone(pod))

    this.#server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      // A watch stays open and silent for as long as the test wants.
      idleTimeout: 0,
      tls: opts.tls
        ? {
            cert: readFileSync(join(FIXTURES, 'server.crt'), 'utf8'),
            key: readFileSync(join(FIXTURES, 'server.key'), 'utf8'),
          }
        : undefined,
      fetch: (request) => this.#handle(request),
    })
  }

  get port(): number {
    return this.#server.port ?? 0
  }

  get url(): string {
    return this.#server.url.origin
  }

  lists(): SeenRequest[] {
    return this.requests.filter((r) => r.params.get('watch') !== 'true')
  }

  watches(): SeenRequest[] {
    return this.requests.filter((r) => r.params.get('watch') === 'true')
  }

  /** Changes the cluster's state and tells every watch of the pod's node. */
  send(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: Pod): void {
    const object = structuredClone(pod)
    object.metadata.resourceVersion = String(++this.resourceVersion)
    if (type === 'DELETED') this.pods.delete(object.metadata.uid)
    else this.pods.set(object.metadata.uid, object)

    for (const watch of this.open) {
      if (watch.node === undefined || watch.node === object.spec.nodeName) {
        watch.stream.enqueue(encoder.encode(`${JSON.stringify({ type, object })}\n`))
      }
    }
  }

  /** Writes one line, as given, to every open watch. */
  sendLine(line: string): void {
    for (const watch of this.open) watch.stream.enqueue(encoder.encode(`${line}\n`))
  }

  /** Ends every open watch from the server's side, as the API server does at its timeout. */
  endWatches(): void {
    for (const watch of this.open) watch.stream.close()
    this.open.clear()
  }

  stop(): void {
    void this.#server.stop(true)
  }

  #handle(request: Request): Response {
    const url = new URL(request.url)
    const authorization = request.headers.get('authorization')
    this.requests.push({
      path: url.pathname,
      params: url.searchParams,
      search: url.search,
      authorization,
    })

    if (authorization !== `Bearer ${TOKEN}`) {
      return this.#failure({ status: 401, reason: 'Unauthorized', message: 'Unauthorized' })
    }
    if (request.method !== 'GET' || url.pathname !== '/api/v1/pods') {
      return this.#failure({
        status: 404,
        reason: 'NotFound',
        message: 'the server could not find the requested resource',
      })
    }

    const selector = url.searchParams.get('fieldSelector')
    const node = selector?.startsWith('spec.nodeName=') ? selector.slice(14) : undefined
    if (url.searchParams.get('watch') === 'true') return this.#watch(node)

    const failure = this.listAlways ?? this.listFailures.shift()
    if (failure !== undefined) return this.#failure(failure)
    const items = [...this.pods.values()].filter(
      (p) => node === undefined || p.spec.nodeName === node
    )
    return Response.json({
      kind: 'PodList',
      apiVersion: 'v1',
      metadata: { resourceVersion: String(this.resourceVersion) },
      items,
    })
  }

  #watch(node: string | undefined): Response {
    const failure = this.watchFailures.shift()
    if (failure !== undefined) return this.#failure(failure)

    const open = this.open
    let watch: OpenWatch | undefined
    const body = new ReadableStream<Uint8Array>({
      start(stream) {
        watch = { node, stream }
        open.add(watch)
        // Bun.serve sends the headers with the first chunk; a watch reader skips blank lines.
        stream.enqueue(encoder.encode('\n'))
      },
      cancel() {
        if (watch !== undefined) open.delete(watch)
      },
    })
    return new Response(body, { headers: { 'content-type': 'application/json' } })
  }

  #failure(failure: Failure): Response {
    return new Response(statusBody(failure), {
      status: failure.status,
      headers: { 'content-type': 'application/json' },
    })
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'hm-k8s-test-'))
let scratchCount = 0

/** A service-account directory as the kubelet mounts it, trusting `ca`. */
function serviceAccount(ca: 'ca.crt' | 'other-ca.crt' = 'ca.crt', token: string | null = TOKEN) {
  const dir = join(scratch, `sa-${++scratchCount}`)
  Bun.spawnSync(['mkdir', '-p', dir])
  copyFileSync(join(FIXTURES, ca), join(dir, 'ca.crt'))
  if (token !== null) writeFileSync(join(dir, 'token'), token)
  writeFileSync(join(dir, 'namespace'), 'hookmeter')
  return dir
}

const cleanups: Array<() => void> = []

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup()
})

afterAll(() => rmSync(scratch, { recursive: true, force: true }))

function fakeServer(opts: { tls: boolean } = { tls: true }): FakeApiServer {
  const server = new FakeApiServer(opts)
  cleanups.push(() => server.stop())
  return server
}

interface Started {
  resolver: PodResolver
  warnings: Array<{ msg: string; fields: Record<string, unknown> }>
  delays: number[]
}

// Past this many delays the default delayFn stops answering, so that a test whose server keeps
// failing cannot spin.
const DELAYS_ANSWERED = 20

/** A resolver in the cluster the fake server plays, with recorded warnings and delays. */
function startResolver(server: FakeApiServer | { port: number }, opts: PodResolverOptions = {}) {
  const warnings: Started['warnings'] = []
  const delays: number[] = []
  const resolver = PodResolver.fromEnv({
    env: {
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: String(server.port),
      NODE_NAME: NODE,
    },
    serviceAccountDir: serviceAccount(),
    onWarn: (msg, fields) => warnings.push({ msg, fields }),
    delayFn: (ms) => {
      delays.push(ms)
      return delays.length <= DELAYS_ANSWERED ? Promise.resolve() : new Promise(() => {})
    },
    ...opts,
  })
  cleanups.push(() => resolver.close())
  return { resolver, warnings, delays }
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await Bun.sleep(5)
  }
}

/** Started, listed, and watching: what most tests begin from. */
async function watching(opts: PodResolverOptions = {}) {
  const server = fakeServer()
  const started = startResolver(server, opts)
  await started.resolver.ready()
  await waitFor('the watch to open', () => server.open.size === 1)
  return { server, ...started }
}

describe('in-cluster configuration', () => {
  test('a process is in a cluster when KUBERNETES_SERVICE_HOST is set and not empty', () => {
    expect(inCluster({ KUBERNETES_SERVICE_HOST: '10.96.0.1' })).toBe(true)
    expect(inCluster({ KUBERNETES_SERVICE_HOST: '' })).toBe(false)
    expect(inCluster({})).toBe(false)
  })

  test("the in-cluster config reaches the service over https with the account's files", () => {
    const dir = '/srv/sa'
    const v4 = inClusterKubeConfig(
      { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '6443' },
      dir
    )
    expect(v4.getCurrentCluster()).toMatchObject({
      server: 'https://10.96.0.1:6443',
      caFile: '/srv/sa/ca.crt',
      skipTLSVerify: false,
    })
    expect(v4.getCurrentUser()?.authProvider).toEqual({
      name: 'tokenFile',
      config: { tokenFile: '/srv/sa/token' },
    })

    const v6 = inClusterKubeConfig({ KUBERNETES_SERVICE_HOST: 'fd00:10:96::1' }, dir)
    expect(v6.getCurrentCluster()?.server).toBe('https://[fd00:10:96::1]:443')
  })

  test('fromEnv refuses to start without a node name, or off-cluster without a kubeConfig', () => {
    expect(() => PodResolver.fromEnv({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' } })).toThrow(
      /node name unknown; set NODE_NAME/
    )
    expect(() => PodResolver.fromEnv({ env: { NODE_NAME: NODE } })).toThrow(
      /KUBERNETES_SERVICE_HOST is not set and no kubeConfig given/
    )
  })
})

describe('PodResolver against a fake API server', () => {
  test('resolves a pod by its UID, with namespace, DaemonSet and containers', async () => {
    const { resolver } = await watching()

    expect(resolver.resolve(TETRAGON.metadata.uid)).toEqual({
      pod: 'tetragon-x7k2p',
      namespace: 'kube-system',
      uid: TETRAGON.metadata.uid,
      daemonSet: 'tetragon',
      owner: { kind: 'DaemonSet', name: 'tetragon' },
      containers: [
        {
          containerId: hex64('e5'),
          name: 'export-stdout',
          image: 'quay.io/cilium/hubble-export-stdout:v1.1.0',
        },
        { containerId: hex64('7a'), name: 'tetragon', image: 'quay.io/cilium/tetragon:v1.7.0' },
        {
          containerId: hex64('c1'),
          name: 'tetragon-operator',
          image: 'quay.io/cilium/tetragon-operator:v1.7.0',
        },
      ],
    })
    expect(resolver.status()).toEqual({
      state: 'synced',
      pods: 4,
      nodeName: NODE,
      server: `https://127.0.0.1:${resolver.server.split(':').at(-1)}`,
    })
  })

  test('resolves by containerd and cri-o container ids, with or without the prefix', async () => {
    const { resolver } = await watching()

    expect(resolver.resolve(undefined, hex64('7a'))?.pod).toBe('tetragon-x7k2p')
    expect(resolver.resolve(undefined, `containerd://${hex64('7a')}`)?.pod).toBe('tetragon-x7k2p')
    expect(resolver.resolve(undefined, hex64('fa'))?.pod).toBe('falco-9qv4d')
    expect(resolver.resolve(undefined, `cri-o://${hex64('fa')}`)?.daemonSet).toBe('falco')
    // an init container's id, as a tool's setup container would hold a pinned object
    expect(resolver.resolve(undefined, hex64('c1'))?.pod).toBe('tetragon-x7k2p')
    expect(resolver.resolve(undefined, hex64('99'))).toBeNull()
  })

  test('falls back to the container id when the pod UID is unknown', async () => {
    const { resolver } = await watching()
    const unknownUid = '00000000-0000-4000-8000-000000000000'

    expect(resolver.resolve(unknownUid, hex64('fa'))?.pod).toBe('falco-9qv4d')
    expect(resolver.resolve(unknownUid)).toBeNull()
    expect(resolver.resolve(unknownUid, hex64('99'))).toBeNull()
    expect(resolver.resolve()).toBeNull()
  })

  test('gives a ReplicaSet or Node owner as owner, with no daemonSet', async () => {
    const { resolver } = await watching()

    const coredns = resolver.resolve(COREDNS.metadata.uid)
    expect(coredns?.owner).toEqual({ kind: 'ReplicaSet', name: 'coredns-6f6b679f8f' })
    expect(coredns).not.toHaveProperty('daemonSet')

    const apiserver = resolver.resolve(APISERVER.metadata.uid)
    expect(apiserver?.owner).toEqual({ kind: 'Node', name: NODE })
    expect(apiserver).not.toHaveProperty('daemonSet')
  })

  test('resolves a static pod by the UID in its cgroup path (the mirror annotation)', async () => {
    const { resolver } = await watching()

    // The kubelet's cgroup for a static pod is kubepods-…-pod<config hash>.slice.
    const staticUid = '5d41402abc4b2a76b9719d911017c592'
    expect(resolver.resolve(staticUid)?.pod).toBe('kube-apiserver-node-1')
    expect(resolver.resolve(staticUid)?.uid).toBe(APISERVER.metadata.uid)
  })

  test('asks only for the pods of its own node, in the list and in the watch', async () => {
    const { server, resolver } = await watching()

    expect(server.lists()).toHaveLength(1)
    expect(server.lists()[0]?.search).toBe('?fieldSelector=spec.nodeName%3Dnode-1')
    expect(server.watches()).toHaveLength(1)
    expect(server.watches()[0]?.params.get('fieldSelector')).toBe(SELECTOR)
    expect(resolver.resolve(KUBEARMOR_NODE_2.metadata.uid)).toBeNull()
    expect(resolver.resolve(undefined, hex64('4b'))).toBeNull()
  })

  test("sends the account's token, and watches from the resourceVersion it listed", async () => {
    const { server } = await watching()

    expect(server.requests.map((r) => r.authorization)).toEqual([
      `Bearer ${TOKEN}`,
      `Bearer ${TOKEN}`,
    ])
    expect(server.watches()[0]?.params.get('resourceVersion')).toBe('1000')
  })

  test('a pod ADDED on the watch becomes resolvable, and is gone when DELETED', async () => {
    const { server, resolver } = await watching()
    const uid = '11111111-2222-4333-8444-555555555555'
    const pod = newPod('tracee-5xw9k', uid, `containerd://${hex64('3e')}`)

    server.send('ADDED', pod)
    await waitFor('the added pod', () => resolver.resolve(uid) !== null)
    expect(resolver.resolve(undefined, hex64('3e'))).toMatchObject({
      pod: 'tracee-5xw9k',
      namespace: 'tracee',
      daemonSet: 'tracee-5xw9k',
    })
    expect(resolver.status().pods).toBe(5)

    server.send('DELETED', pod)
    await waitFor('the deleted pod to go', () => resolver.resolve(uid) === null)
    expect(resolver.resolve(undefined, hex64('3e'))).toBeNull()
    expect(resolver.status().pods).toBe(4)
    expect(resolver.stats()).toEqual({
      lists: 1,
      watchEvents: 2,
      dropped: 0,
      errors: 0,
      restarts: 0,
    })
  })

  test('a MODIFIED pod becomes resolvable by the ids its containers start with', async () => {
    const { server, resolver } = await watching()
    const uid = '66666666-7777-4888-8999-aaaaaaaaaaaa'

    server.send('ADDED', newPod('tracee-pending', uid))
    await waitFor('the pending pod', () => resolver.resolve(uid) !== null)
    expect(resolver.resolve(uid)?.containers).toEqual([])
    expect(resolver.resolve(undefined, hex64('5c'))).toBeNull()

    server.send('MODIFIED', newPod('tracee-pending', uid, `containerd://${hex64('5c')}`))
    await waitFor('the started container', () => resolver.resolve(undefined, hex64('5c')) !== null)
    expect(resolver.resolve(uid)?.containers).toHaveLength(1)
  })

  test('a watch failing with 500 is restarted after a backoff, counted, warned once', async () => {
    const server = fakeServer()
    server.watchFailures.push(INTERNAL, INTERNAL)
    const { resolver, warnings, delays } = startResolver(server)

    await waitFor('the third watch to open', () => server.open.size === 1)
    expect(delays).toEqual([INITIAL_RETRY_MS, 2 * INITIAL_RETRY_MS])
    expect(resolver.stats()).toEqual({
      lists: 1,
      watchEvents: 0,
      dropped: 0,
      errors: 2,
      restarts: 2,
    })
    // Restarted from the listed resourceVersion, not relisted.
    expect(server.watches().map((r) => r.params.get('resourceVersion'))).toEqual([
      '1000',
      '1000',
      '1000',
    ])
    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.fields).toMatchObject({ call: 'watch pods', status: 500, node: NODE })
    expect(String(warnings[0]?.fields.error)).toContain('etcd leader changed')
    expect(resolver.status().state).toBe('synced')

    const uid = '22222222-3333-4444-8555-666666666666'
    server.send('ADDED', newPod('tracee-after-restart', uid))
    await waitFor('the pod added after the restart', () => resolver.resolve(uid) !== null)
  })

  test('the restart delay doubles up to its cap, and starts over after an event', async () => {
    const server = fakeServer()
    server.watchFailures.push(...Array<Failure>(7).fill(INTERNAL))
    const { resolver, delays } = startResolver(server)

    await waitFor('the watch to open after seven failures', () => server.open.size === 1)
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, MAX_RETRY_MS, MAX_RETRY_MS])

    server.send('ADDED', newPod('tracee-a', '33333333-4444-4555-8666-777777777777'))
    await waitFor('the event', () => resolver.stats().watchEvents === 1)
    server.watchFailures.push(INTERNAL)
    server.endWatches()

    await waitFor('the watch to open again', () => server.open.size === 1)
    expect(delays.slice(7)).toEqual([INITIAL_RETRY_MS])
    expect(resolver.stats().restarts).toBe(8)
  })

  test('a garbled watch line is counted and warned once per kind; the watch goes on', async () => {
    const { server, resolver, warnings } = await watching()

    server.sendLine('{"type":"ADDED","object":{"metadata":')
    server.sendLine('not json at all')
    server.sendLine('{"type":"ADDED"}')
    server.sendLine('{"type":"ADDED","object":{"metadata":{"name":"no-uid","namespace":"x"}}}')
    server.sendLine('{"type":"SHRUGGED","object":{}}')
    const uid = '44444444-5555-4666-8777-888888888888'
    server.send('ADDED', newPod('tracee-after-garbage', uid))

    await waitFor('the pod after the garbage', () => resolver.resolve(uid) !== null)
    expect(resolver.stats()).toMatchObject({ dropped: 5, watchEvents: 1, errors: 0, restarts: 0 })
    expect(warnings.map((w) => w.fields.why)).toEqual([
      'line is not JSON',
      'ADDED event has no object',
      'ADDED event is not a pod with a UID',
      "unknown event type 'SHRUGGED'",
    ])
    expect(warnings[0]?.fields.line).toBe('{"type":"ADDED","object":{"metadata":')
    expect(server.watches()).toHaveLength(1)
  })

  test('an ERROR event is counted and warned, and the watch goes on', async () => {
    const { server, resolver, warnings } = await watching()

    server.sendLine(
      JSON.stringify({ type: 'ERROR', object: JSON.parse(statusBody(INTERNAL)) as unknown })
    )
    const uid = '55555555-6666-4777-8888-999999999999'
    server.send('ADDED', newPod('tracee-after-error', uid))

    await waitFor('the pod after the error event', () => resolver.resolve(uid) !== null)
    expect(resolver.stats()).toMatchObject({ errors: 1, restarts: 0, watchEvents: 1 })
    expect(warnings).toEqual([
      {
        msg: 'pod watch error event',
        fields: { code: 500, reason: 'InternalError', message: INTERNAL.message, node: NODE },
      },
    ])
  })

  test('an expired resourceVersion (410) relists without counting an error', async () => {
    const { server, resolver, warnings } = await watching()

    // Changes the watch never told of: only the relist can bring them.
    const uid = '77777777-8888-4999-8aaa-bbbbbbbbbbbb'
    const missed = newPod('tracee-missed', uid)
    missed.metadata.resourceVersion = String(++server.resourceVersion)
    server.pods.set(uid, missed)
    server.pods.delete(FALCO.metadata.uid)

    server.sendLine(
      JSON.stringify({
        type: 'ERROR',
        object: {
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message: 'too old resource version: 1000 (1002)',
          reason: 'Expired',
          code: 410,
        },
      })
    )
    server.endWatches()

    await waitFor('the relist', () => resolver.stats().lists === 2)
    await waitFor('the pod the relist brought', () => resolver.resolve(uid) !== null)
    expect(resolver.resolve(FALCO.metadata.uid)).toBeNull()
    expect(resolver.resolve(undefined, hex64('fa'))).toBeNull()
    expect(resolver.stats()).toMatchObject({ errors: 0, restarts: 0 })
    expect(warnings).toEqual([])
  })

  test('a 403 on the list degrades the resolver: it resolves nothing and says why', async () => {
    const server = fakeServer()
    server.listAlways = FORBIDDEN
    const { resolver, warnings, delays } = startResolver(server, {
      delayFn: (ms) => {
        delays.push(ms)
        return delays.length <= 2 ? Promise.resolve() : new Promise(() => {})
      },
    })

    await resolver.ready()
    await waitFor('three failed lists', () => resolver.stats().errors === 3)
    expect(resolver.resolve(TETRAGON.metadata.uid)).toBeNull()
    expect(resolver.resolve(undefined, hex64('7a'))).toBeNull()

    const status = resolver.status()
    expect(status.state).toBe('degraded')
    expect(status.pods).toBe(0)
    expect(status.reason).toStartWith('list pods: 403 Forbidden: pods is forbidden')
    expect(status.reason).toEndWith('; the service account needs list and watch on pods')

    expect(warnings).toHaveLength(1)
    expect(warnings[0]?.fields).toMatchObject({ call: 'list pods', status: 403, node: NODE })
    expect(resolver.stats()).toMatchObject({ lists: 0, restarts: 2 })
    expect(server.watches()).toHaveLength(0)
  })

  test('pods listed before a failure stay resolvable while the resolver is degraded', async () => {
    const { server, resolver } = await watching()

    server.listAlways = FORBIDDEN
    server.watchFailures.push({ status: 410, reason: 'Expired', message: 'too old' })
    server.endWatches()

    await waitFor('the failed relist', () => resolver.status().state === 'degraded')
    expect(resolver.status().reason).toContain('403')
    expect(resolver.resolve(TETRAGON.metadata.uid)?.pod).toBe('tetragon-x7k2p')
  })

  test('an unreachable API server degrades the resolver instead of throwing', async () => {
    // A port that was just ours and is now closed.
    const gone = fakeServer()
    const port = gone.port
    gone.stop()
    const { resolver, warnings } = startResolver({ port })

    await resolver.ready()
    expect(resolver.status().state).toBe('degraded')
    expect(resolver.status().reason).toStartWith(`list pods: 127.0.0.1:${port}: `)
    expect(resolver.resolve(TETRAGON.metadata.uid)).toBeNull()
    expect(warnings).toEqual([
      {
        msg: 'kubernetes api request failed; pods resolve as last listed',
        fields: {
          call: 'list pods',
          code: 'ECONNREFUSED',
          error: resolver.status().reason,
          node: NODE,
        },
      },
    ])
  })

  test('the server certificate must be signed by the service-account CA', async () => {
    const server = fakeServer()
    const dir = serviceAccount('other-ca.crt')
    const { resolver } = startResolver(server, { serviceAccountDir: dir })

    await resolver.ready()
    expect(resolver.status().state).toBe('degraded')
    expect(resolver.status().reason).toMatch(/certificate/i)
    expect(resolver.status().reason).toContain(`(trusting ${join(dir, 'ca.crt')})`)
    expect(server.requests).toHaveLength(0)
  })

  test('a missing service-account token degrades the resolver and names the file', async () => {
    const server = fakeServer()
    const dir = serviceAccount('ca.crt', null)
    const { resolver } = startResolver(server, { serviceAccountDir: dir })

    await resolver.ready()
    expect(resolver.status().state).toBe('degraded')
    expect(resolver.status().reason).toContain(join(dir, 'token'))
    expect(server.requests).toHaveLength(0)
  })

  test('a kubeConfig passed in is used as given, here over plain http', async () => {
    const server = fakeServer({ tls: false })
    const kubeConfig = new KubeConfig()
    kubeConfig.loadFromOptions({
      // The client refuses an http server unless TLS verification is off.
      clusters: [{ name: 'fake', server: server.url, skipTLSVerify: true }],
      users: [{ name: 'fake', token: TOKEN }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
      currentContext: 'fake',
    })
    const { resolver } = startResolver(server, { env: { NODE_NAME: NODE }, kubeConfig })

    await resolver.ready()
    expect(server.url).toStartWith('http://127.0.0.1:')
    expect(resolver.resolve(FALCO.metadata.uid)?.pod).toBe('falco-9qv4d')
  })

  test('a watch silent beyond watchIdleMs is reopened without counting an error', async () => {
    const { server, resolver } = await watching({ watchIdleMs: 150 })

    await waitFor('a second watch', () => server.watches().length >= 2)
    expect(server.watches()[1]?.params.get('resourceVersion')).toBe('1000')
    expect(resolver.stats()).toMatchObject({ lists: 1, errors: 0, restarts: 0 })
  })

  test('close() ends the open watch, and a second close() does nothing', async () => {
    const { server, resolver } = await watching()

    resolver.close()
    await waitFor('the watch to be cancelled', () => server.open.size === 0)
    resolver.close()
    expect(resolver.status().state).toBe('closed')
    await resolver.ready()
  })

  test('close() during a restart delay cancels the restart: no request follows', async () => {
    const server = fakeServer()
    server.watchFailures.push(INTERNAL)
    let release = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const delays: number[] = []
    const { resolver } = startResolver(server, {
      delayFn: (ms) => {
        delays.push(ms)
        return gate
      },
    })

    await waitFor('the restart delay', () => delays.length === 1)
    const seen = server.requests.length
    resolver.close()
    release()
    await Bun.sleep(100)

    expect(server.requests).toHaveLength(seen)
    expect(resolver.stats().restarts).toBe(0)
  })

  test("close() during the informer's own reconnect delay: no request follows", async () => {
    let release = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    const delays: number[] = []
    const { server, resolver } = await watching({
      delayFn: (ms) => {
        delays.push(ms)
        return gate
      },
    })

    // The informer reopens a watch the server ended at once the first time, after a delay
    // the next.
    server.endWatches()
    await waitFor('the watch to reopen', () => server.open.size === 1)
    server.endWatches()
    await waitFor('the reconnect delay', () => delays.length === 1)
    const seen = server.requests.length
    resolver.close()
    release()
    await Bun.sleep(100)

    expect(server.requests).toHaveLength(seen)
    expect(resolver.stats()).toMatchObject({ errors: 0, restarts: 0 })
  })
})
