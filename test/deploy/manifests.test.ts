// deploy/kubernetes: the kustomize base and the canary overlay render with `kubectl kustomize`
// (when kubectl is installed; without it each file is checked on its own), every object validates
// against the Kubernetes schemas (kubernetes-models, offline), the DaemonSet has what the rollout
// relies on, and a policy change changes the pod template (the ConfigMap's hashed name).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../src/config/load';
import { buildProgram } from '../../src/cli/main';

const repo = path.resolve(__dirname, '../../..');
const deploy = path.join(repo, 'deploy/kubernetes');

type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: any;
};

/**
 * kubernetes-models ships ES modules only, behind an import-only exports map: load the file itself.
 */
function model(group: string, kind: string): new (o: unknown) => { validate(): void } {
  const file = path.join(repo, 'node_modules/kubernetes-models', group, `${kind}.js`);
  return (require(file) as Record<string, new (o: unknown) => { validate(): void }>)[kind]!;
}

const MODELS: Record<string, [string, string]> = {
  'v1/Namespace': ['v1', 'Namespace'],
  'v1/ServiceAccount': ['v1', 'ServiceAccount'],
  'v1/ConfigMap': ['v1', 'ConfigMap'],
  'apps/v1/DaemonSet': ['apps/v1', 'DaemonSet'],
};

function validate(o: Obj): void {
  const m = MODELS[`${o.apiVersion}/${o.kind}`];
  assert.ok(m, `${o.kind} ${o.metadata?.name}: no schema for ${o.apiVersion} (add it to MODELS)`);
  const Model = model(...m);
  assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`);
}

function yamlDocs(text: string): Obj[] {
  return parseAllDocuments(text).map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS() as Obj;
  });
}

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
const haveKubectl = kubectl.status === 0;

function render(dir: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return yamlDocs(r.stdout);
}

/** What the DaemonSet must have for a safe rollout, checked on a rendered or a raw object. */
function checkDaemonSet(ds: Obj, configMap: string | null): void {
  const spec = ds.spec;
  assert.equal(spec.updateStrategy.type, 'RollingUpdate');
  assert.deepEqual(spec.updateStrategy.rollingUpdate, { maxUnavailable: 1, maxSurge: 0 });
  assert.ok(spec.minReadySeconds >= 10, 'minReadySeconds');
  const pod = spec.template.spec;
  assert.equal(pod.hostPID, true);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  assert.equal(pod.automountServiceAccountToken, false);
  const c = pod.containers[0];
  assert.equal(c.securityContext.privileged, true);
  assert.deepEqual(c.readinessProbe.exec.command, ['vfioctl', 'agent', '--probe']);
  const hostVol = pod.volumes.find((v: any) => v.hostPath);
  assert.equal(hostVol.hostPath.path, '/');
  assert.equal(c.volumeMounts.find((m: any) => m.name === hostVol.name).mountPath, '/host');
  const policyVol = pod.volumes.find((v: any) => v.configMap);
  const policyMount = c.volumeMounts.find((m: any) => m.name === policyVol.name);
  assert.equal(policyMount.readOnly, true);
  if (configMap) assert.equal(policyVol.configMap.name, configMap);
  // The agent's options exist in the CLI (the global --host-root comes from the host-root work).
  const agent = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {}).commands.find(
    (x) => x.name() === 'agent',
  )!;
  const known = new Set(agent.options.map((o) => o.long));
  const args: string[] = c.args;
  assert.equal(args[args.indexOf('agent') + 1]?.startsWith('--policy='), true);
  for (const a of args.slice(args.indexOf('agent') + 1))
    assert.ok(known.has(a.split('=')[0]), `agent option ${a}`);
  const policyArg = args.find((a) => a.startsWith('--policy='))!.slice('--policy='.length);
  assert.equal(path.dirname(policyArg), policyMount.mountPath);
}

test('the policies in the base and the canary overlay are valid vfioctl configurations', () => {
  for (const f of ['base/vfioctl.json', 'overlays/canary/vfioctl.json']) {
    const config = parseConfig(fs.readFileSync(path.join(deploy, f), 'utf8'), f);
    assert.ok(config.rules.length > 0, f);
  }
});

test('each manifest of the base validates against the Kubernetes schemas and has what the rollout relies on', () => {
  const k = yamlDocs(fs.readFileSync(path.join(deploy, 'base/kustomization.yaml'), 'utf8'))[0]!;
  const objs: Obj[] = [];
  for (const r of k.resources as string[])
    objs.push(...yamlDocs(fs.readFileSync(path.join(deploy, 'base', r), 'utf8')));
  for (const g of k.configMapGenerator as { files: string[] }[])
    for (const f of g.files) assert.ok(fs.existsSync(path.join(deploy, 'base', f)), f);
  for (const o of objs) validate(o);
  checkDaemonSet(objs.find((o) => o.kind === 'DaemonSet')!, null);
  // A broken object does fail the validation (the validator is not a no-op).
  const ds = structuredClone(objs.find((o) => o.kind === 'DaemonSet')!);
  ds.spec.minReadySeconds = 'thirty';
  assert.throws(() => new (model('apps/v1', 'DaemonSet'))(ds).validate(), /minReadySeconds/);
});

// CI sets VFIOCTL_REQUIRE_KUBECTL=1: there a missing kubectl is a failure, not a skip.
const kubectlMissing =
  "kubectl is not installed (its kustomize must support `patches`: v4 or later; Debian 12's kubernetes-client 1.20 is too old); the manifests were validated file by file";
test('kubectl kustomize renders the base and the canary overlay; a policy change renames the ConfigMap in the pod template', {
  skip: haveKubectl || process.env.VFIOCTL_REQUIRE_KUBECTL === '1' ? false : kubectlMissing,
}, (t) => {
  assert.ok(haveKubectl, kubectlMissing);
  const base = render(path.join(deploy, 'base'));
  for (const o of base) validate(o);
  assert.deepEqual(base.map((o) => o.kind).sort(), [
    'ConfigMap',
    'DaemonSet',
    'Namespace',
    'ServiceAccount',
  ]);
  assert.ok(base.every((o) => o.kind === 'Namespace' || o.metadata.namespace === 'vfioctl-system'));
  const cm = base.find((o) => o.kind === 'ConfigMap')!;
  assert.match(cm.metadata.name, /^vfioctl-policy-[a-z0-9]{10}$/);
  assert.equal(
    cm.data['vfioctl.json'],
    fs.readFileSync(path.join(deploy, 'base/vfioctl.json'), 'utf8'),
  );
  const ds = base.find((o) => o.kind === 'DaemonSet')!;
  checkDaemonSet(ds, cm.metadata.name);
  assert.match(ds.spec.template.spec.containers[0].image, /vfioctl-agent:/);
  // A copy of the base with another policy: only the ConfigMap's name (and content) differ, so
  // the DaemonSet's pod template changes and the controller rolls it out.
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-kustomize-'));
  t.after(() => fs.rmSync(copy, { recursive: true, force: true }));
  fs.cpSync(path.join(deploy, 'base'), copy, { recursive: true });
  fs.writeFileSync(
    path.join(copy, 'vfioctl.json'),
    '{ "version": 1, "rules": [ { "match": { "address": "0000:3b:00.1" }, "intent": "vfio-pci" } ] }\n',
  );
  const changed = render(copy);
  const cm2 = changed.find((o) => o.kind === 'ConfigMap')!;
  assert.notEqual(cm2.metadata.name, cm.metadata.name);
  const ds2 = changed.find((o) => o.kind === 'DaemonSet')!;
  assert.equal(
    ds2.spec.template.spec.volumes.find((v: any) => v.configMap).configMap.name,
    cm2.metadata.name,
  );
  assert.notDeepEqual(ds2.spec.template, ds.spec.template);
  // The canary: its own DaemonSet, selector and policy, only on labelled nodes; the base's keeps
  // off them.
  const canary = render(path.join(deploy, 'overlays/canary'));
  for (const o of canary) validate(o);
  const cds = canary.find((o) => o.kind === 'DaemonSet')!;
  assert.equal(cds.metadata.name, 'vfioctl-agent-canary');
  assert.equal(cds.spec.selector.matchLabels['app.kubernetes.io/name'], 'vfioctl-agent-canary');
  const term = (d: Obj) =>
    d.spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution
      .nodeSelectorTerms[0].matchExpressions[0];
  assert.deepEqual(term(cds), { key: 'vfioctl.io/canary', operator: 'In', values: ['true'] });
  assert.deepEqual(term(ds), { key: 'vfioctl.io/canary', operator: 'NotIn', values: ['true'] });
  const ccm = canary.find((o) => o.kind === 'ConfigMap')!;
  assert.equal(
    ccm.data['vfioctl.json'],
    fs.readFileSync(path.join(deploy, 'overlays/canary/vfioctl.json'), 'utf8'),
  );
  checkDaemonSet(cds, ccm.metadata.name);
  assert.equal(
    cds.spec.template.spec.serviceAccountName,
    canary.find((o) => o.kind === 'ServiceAccount')!.metadata.name,
  );
});
