// Offline validation of Tally's deployment (run by deploy/check.sh).
//
//   node validate.mjs manifests RENDERED.yaml --config deploy/config/tally.yaml
//        [--namespace NS] [--replicas N] [--pinned-image]
//     Every built-in object of a `kubectl kustomize` rendering is validated
//     against the Kubernetes OpenAPI schema (npm kubernetes-models: each
//     model's validate(), plus a strict pass that reports fields the schema
//     does not know, e.g. a misspelt `readinesProbe`); the custom resources
//     (KafkaTopic, KafkaUser, PodMonitor, PrometheusRule) get their required
//     fields checked here; then what Tally needs of the whole: probes,
//     restricted Pod Security, selectors that match the pods, TALLY_*
//     variables that name configuration keys, topics and ACLs.
//   node validate.mjs alerts ALERTS.yaml ALERTS_TEST.yaml RUNBOOK.md
//     Every alert has labels.severity, annotations.summary, a runbook_url
//     pointing at a section of docs/runbook.md that exists, and a promtool
//     rule test in which it fires.
//   node validate.mjs extract RENDERED.yaml OUTDIR
//     Lays out the tally container as the pod would see it under OUTDIR
//     (ConfigMap files at their mount paths, placeholder secret files, empty
//     volumes) and writes OUTDIR/args and OUTDIR/env (one per line, paths
//     mapped under OUTDIR) for `tally --check-config`.
//
// Exit 0 when everything holds; 1 with one line per problem otherwise.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import YAML from "yaml";

const here = path.dirname(fileURLToPath(import.meta.url));
const modelsRoot = path.join(here, "node_modules", "kubernetes-models");
const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

function readYamlDocs(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

const idOf = (o) => `${o.kind}/${o.metadata?.name ?? "?"}`;

// ---- schema validation of built-in kinds -----------------------------------

async function loadModel(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const file = path.join(modelsRoot, group, version, `${kind}.mjs`);
  if (!fs.existsSync(file)) return null;
  const mod = await import(pathToFileURL(file).href);
  const Model = mod[kind];
  // The raw (ajv standalone) validate function the model uses.
  const m = fs.readFileSync(file, "utf8").match(/import\{validate\}from"([^"]+)"/);
  if (!m) throw new Error(`${file}: cannot find its schema import`);
  const schema = await import(new URL(m[1], pathToFileURL(file)).href);
  return { Model, rawValidate: schema.validate };
}

// The schemas accept unknown fields (no additionalProperties: false), and so
// would the API server's non-strict decoding. To catch a misspelt field, run
// the compiled schema over proxies that record which properties it looks at:
// it checks every property its schema declares, and enumerates the keys of
// free-form maps; any other key of an object it looked into is unknown.
function unknownFields(rawValidate, data) {
  const records = [];
  const wrap = (v, where) => {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map((x, i) => wrap(x, `${where}[${i}]`));
    const rec = { where, keys: Object.keys(v), seen: new Set(), enumerated: false };
    records.push(rec);
    const target = {};
    for (const [k, x] of Object.entries(v)) target[k] = wrap(x, where ? `${where}.${k}` : k);
    return new Proxy(target, {
      get(t, k, r) {
        if (typeof k === "string") rec.seen.add(k);
        return Reflect.get(t, k, r);
      },
      has(t, k) {
        if (typeof k === "string") rec.seen.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        rec.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
  };
  rawValidate(wrap(data, ""));
  const out = [];
  for (const r of records) {
    if (r.enumerated || r.seen.size === 0) continue;  // a map, or not looked into
    for (const k of r.keys) if (!r.seen.has(k)) out.push(r.where ? `${r.where}.${k}` : k);
  }
  return out;
}

async function validateBuiltin(o) {
  const loaded = await loadModel(o.apiVersion, o.kind);
  if (!loaded) return false;
  try {
    new loaded.Model(o).validate();
  } catch (e) {
    for (const line of String(e.message).split(/\n|, (?=data)/)) problem(idOf(o), `schema: ${line.trim()}`);
  }
  for (const f of unknownFields(loaded.rawValidate, o)) problem(idOf(o), `schema: unknown field ${f}`);
  return true;
}

// ---- custom resources: required fields -------------------------------------

const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isInt = (v) => Number.isInteger(v);
const dns1123 = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const duration = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;

function allowOnly(where, obj, keys) {
  for (const k of Object.keys(obj)) if (!keys.includes(k)) problem(where, `unknown field ${k}`);
}

function checkMeta(o) {
  const id = idOf(o);
  if (!isObj(o.metadata) || typeof o.metadata.name !== "string" || !dns1123.test(o.metadata.name)) {
    problem(id, "metadata.name missing or not a DNS-1123 name");
  }
  allowOnly(id, o, ["apiVersion", "kind", "metadata", "spec"]);
}

function checkStrimziCluster(o) {
  const c = o.metadata?.labels?.["strimzi.io/cluster"];
  if (typeof c !== "string" || !c) problem(idOf(o), "metadata.labels[strimzi.io/cluster] missing");
  return c;
}

function checkKafkaTopic(o) {
  const id = idOf(o);
  checkMeta(o);
  checkStrimziCluster(o);
  const s = o.spec;
  if (!isObj(s)) return problem(id, "spec missing");
  allowOnly(`${id} spec`, s, ["topicName", "partitions", "replicas", "config"]);
  if (!isInt(s.partitions) || s.partitions < 1) problem(id, "spec.partitions must be an integer >= 1");
  if (!isInt(s.replicas) || s.replicas < 1 || s.replicas > 32767) problem(id, "spec.replicas must be an integer 1..32767");
  const name = s.topicName ?? o.metadata?.name;
  if (typeof name !== "string" || !/^[a-zA-Z0-9._-]{1,249}$/.test(name)) problem(id, `invalid topic name ${name}`);
  if (s.config !== undefined) {
    if (!isObj(s.config)) problem(id, "spec.config must be a map");
    else for (const [k, v] of Object.entries(s.config)) {
      if (!["string", "number", "boolean"].includes(typeof v)) problem(id, `spec.config.${k} must be a scalar`);
    }
    const isr = Number(s.config?.["min.insync.replicas"] ?? 1);
    if (isInt(s.replicas) && isr > s.replicas) problem(id, "min.insync.replicas above replicas: every write would fail");
  }
}

const ACL_OPERATIONS = ["Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction",
  "AlterConfigs", "DescribeConfigs", "IdempotentWrite", "All"];
function checkKafkaUser(o) {
  const id = idOf(o);
  checkMeta(o);
  checkStrimziCluster(o);
  const s = o.spec;
  if (!isObj(s)) return problem(id, "spec missing");
  allowOnly(`${id} spec`, s, ["authentication", "authorization", "quotas", "template"]);
  if (!["tls", "tls-external", "scram-sha-512"].includes(s.authentication?.type)) {
    problem(id, "spec.authentication.type must be tls, tls-external or scram-sha-512");
  }
  if (s.authorization !== undefined) {
    if (s.authorization.type !== "simple") problem(id, "spec.authorization.type must be simple");
    if (!Array.isArray(s.authorization.acls)) return problem(id, "spec.authorization.acls must be a list");
    s.authorization.acls.forEach((a, i) => {
      const w = `${id} acls[${i}]`;
      allowOnly(w, a, ["resource", "operations", "operation", "host", "type"]);
      const r = a.resource;
      if (!isObj(r) || !["topic", "group", "cluster", "transactionalId"].includes(r.type)) {
        return problem(w, "resource.type must be topic, group, cluster or transactionalId");
      }
      allowOnly(`${w} resource`, r, ["type", "name", "patternType"]);
      if (r.type !== "cluster" && (typeof r.name !== "string" || !r.name)) problem(w, "resource.name missing");
      if (r.patternType !== undefined && !["literal", "prefix"].includes(r.patternType)) problem(w, "resource.patternType must be literal or prefix");
      if (!Array.isArray(a.operations) || !a.operations.length) problem(w, "operations must be a non-empty list");
      else for (const op of a.operations) if (!ACL_OPERATIONS.includes(op)) problem(w, `unknown operation ${op}`);
      if (a.type !== undefined && !["allow", "deny"].includes(a.type)) problem(w, "type must be allow or deny");
    });
  }
}

function checkPodMonitor(o) {
  const id = idOf(o);
  checkMeta(o);
  const s = o.spec;
  if (!isObj(s)) return problem(id, "spec missing");
  if (!isObj(s.selector)) problem(id, "spec.selector is required");
  if (!Array.isArray(s.podMetricsEndpoints) || !s.podMetricsEndpoints.length) {
    return problem(id, "spec.podMetricsEndpoints must be a non-empty list");
  }
  s.podMetricsEndpoints.forEach((e, i) => {
    const w = `${id} podMetricsEndpoints[${i}]`;
    allowOnly(w, e, ["port", "portNumber", "targetPort", "path", "scheme", "interval", "scrapeTimeout",
      "honorLabels", "honorTimestamps", "relabelings", "metricRelabelings", "params", "enableHttp2",
      "filterRunning", "followRedirects", "tlsConfig", "basicAuth", "authorization", "oauth2",
      "bearerTokenSecret", "proxyUrl"]);
    if (e.port === undefined && e.portNumber === undefined && e.targetPort === undefined) problem(w, "port is required");
    if (e.interval !== undefined && !duration.test(e.interval)) problem(w, `interval ${e.interval} is not a duration`);
  });
}

function checkPrometheusRule(o) {
  const id = idOf(o);
  checkMeta(o);
  const groups = o.spec?.groups;
  if (!Array.isArray(groups) || !groups.length) return problem(id, "spec.groups must be a non-empty list");
  groups.forEach((g, i) => {
    const w = `${id} groups[${i}]`;
    if (typeof g.name !== "string" || !g.name) problem(w, "name is required");
    if (!Array.isArray(g.rules) || !g.rules.length) return problem(w, "rules must be a non-empty list");
    g.rules.forEach((r, j) => {
      const rw = `${w} rules[${j}]`;
      allowOnly(rw, r, ["alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"]);
      if ((r.alert === undefined) === (r.record === undefined)) problem(rw, "exactly one of alert and record");
      if (typeof r.expr !== "string" || !r.expr.trim()) problem(rw, "expr is required");
      if (r.for !== undefined && !duration.test(r.for)) problem(rw, `for ${r.for} is not a duration`);
      if (r.alert !== undefined) checkAlertAnnotations(`${id} ${r.alert}`, r);
    });
  });
}

function checkAlertAnnotations(w, r) {
  if (!["page", "ticket"].includes(r.labels?.severity)) problem(w, "labels.severity must be page or ticket");
  if (typeof r.annotations?.summary !== "string" || !r.annotations.summary) problem(w, "annotations.summary missing");
  const url = r.annotations?.runbook_url;
  const want = `https://github.com/tally/tally/blob/main/docs/runbook.md#${String(r.alert).toLowerCase()}`;
  if (url !== want) problem(w, `annotations.runbook_url must be ${want} (is ${url})`);
}

const CUSTOM = {
  "kafka.strimzi.io/v1beta2/KafkaTopic": checkKafkaTopic,
  "kafka.strimzi.io/v1beta2/KafkaUser": checkKafkaUser,
  "monitoring.coreos.com/v1/PodMonitor": checkPodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": checkPrometheusRule,
};

// ---- what Tally needs of the rendered whole ----------------------------------

function configKeys(configFile) {
  // deploy/config/tally.yaml lists every key with its default.
  const cfg = YAML.parse(fs.readFileSync(configFile, "utf8"));
  const keys = new Set();
  const walk = (v, prefix) => {
    if (isObj(v) && Object.keys(v).length) for (const [k, x] of Object.entries(v)) walk(x, prefix ? `${prefix}.${k}` : k);
    else keys.add(prefix);
  };
  for (const [k, v] of Object.entries(cfg)) if (!["kafka", "consumer", "producer"].includes(k)) walk(v, k);
  return { cfg, keys };
}
const envName = (key) => `TALLY_${key.toUpperCase().replace(/[.-]/g, "_")}`;

function parseDurationSeconds(s) {
  const m = String(s).match(/^(\d+)(ms|s|m|h|d)?$/);
  if (!m) return NaN;
  const mult = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? "s"];
  return Number(m[1]) * mult;
}

const matches = (selector, labels) =>
  isObj(selector) && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

function checkWhole(objs, opts) {
  const byKind = (k) => objs.filter((o) => o.kind === k);
  const one = (k) => {
    const l = byKind(k);
    if (l.length !== 1) problem("render", `expected exactly one ${k}, found ${l.length}`);
    return l[0];
  };
  const sts = one("StatefulSet");
  if (!sts) return;
  const { cfg, keys } = configKeys(opts.config);
  const pod = sts.spec?.template?.spec ?? {};
  const podLabels = sts.spec?.template?.metadata?.labels ?? {};
  const c = (pod.containers ?? []).find((x) => x.name === "tally");
  const S = "StatefulSet/tally";
  if (!c) return problem(S, "no container named tally");

  // Namespace, replicas, image.
  if (opts.namespace) {
    for (const o of objs) {
      if (o.kind === "Namespace") continue;
      if (o.metadata?.namespace !== opts.namespace) problem(idOf(o), `namespace ${o.metadata?.namespace} is not ${opts.namespace}`);
    }
    if (!objs.some((o) => o.kind === "Namespace" && o.metadata.name === opts.namespace)) problem("render", `no Namespace ${opts.namespace}`);
  }
  if (opts.replicas !== undefined && sts.spec.replicas !== opts.replicas) problem(S, `replicas ${sts.spec.replicas}, expected ${opts.replicas}`);
  if (opts.pinnedImage) {
    const m = String(c.image).match(/^(.+?)(?::([^:/@]+))?(?:@(sha256:[0-9a-f]{64}))?$/);
    if (!m || (!m[3] && (!m[2] || m[2] === "latest"))) problem(S, `image ${c.image} is not pinned (tag or digest, not latest)`);
  }

  // Selectors match the pods.
  if (!matches(sts.spec.selector?.matchLabels, podLabels)) problem(S, "selector does not match the pod template labels");
  for (const svc of byKind("Service")) if (!matches(svc.spec?.selector, podLabels)) problem(idOf(svc), "selector does not match the pods");
  if (!byKind("Service").some((s) => s.metadata.name === sts.spec.serviceName && s.spec.clusterIP === "None")) {
    problem(S, `serviceName ${sts.spec.serviceName} is not a headless Service of the render`);
  }
  for (const k of ["PodDisruptionBudget", "PodMonitor"]) {
    const o = one(k);
    if (o && !matches(o.spec?.selector?.matchLabels, podLabels)) problem(idOf(o), "selector does not match the pods");
  }
  const np = one("NetworkPolicy");
  if (np) {
    if (!matches(np.spec?.podSelector?.matchLabels, podLabels)) problem(idOf(np), "podSelector does not match the pods");
    const types = np.spec?.policyTypes ?? [];
    if (!types.includes("Ingress") || !types.includes("Egress")) problem(idOf(np), "policyTypes must be Ingress and Egress");
    const inPorts = (np.spec?.ingress ?? []).flatMap((r) => (r.ports ?? []).map((p) => p.port));
    if (!inPorts.length || inPorts.some((p) => p !== "metrics" && p !== 9464)) problem(idOf(np), "ingress must be to the metrics port only");
    if ((np.spec?.ingress ?? []).some((r) => !r.from?.length)) problem(idOf(np), "an ingress rule without from admits everyone");
    const outPorts = (np.spec?.egress ?? []).flatMap((r) => (r.ports ?? []).map((p) => p.port));
    for (const p of [53, 9093]) if (!outPorts.includes(p)) problem(idOf(np), `no egress to port ${p}`);
    for (const r of np.spec?.egress ?? []) {
      for (const peer of r.from ?? r.to ?? []) {
        if (matches(peer.podSelector?.matchLabels, podLabels)) problem(idOf(np), "an egress peer selects the tally pods themselves (a label transformer rewrote it?)");
      }
    }
  }

  // Ports, probes.
  const ports = c.ports ?? [];
  const metricsPort = ports.find((p) => p.name === "metrics");
  if (!metricsPort) problem(S, "container has no port named metrics");
  const listen = String(cfg.metrics?.listen ?? "");
  if (metricsPort && !listen.endsWith(`:${metricsPort.containerPort}`)) problem(S, `metrics port ${metricsPort.containerPort} differs from metrics.listen ${listen}`);
  const probe = (name, pathWant) => {
    const p = c[name];
    if (!p?.httpGet) return problem(S, `${name} (httpGet) missing`);
    if (p.httpGet.path !== pathWant) problem(S, `${name} must GET ${pathWant}`);
    if (p.httpGet.port !== "metrics" && p.httpGet.port !== metricsPort?.containerPort) problem(S, `${name} must use the metrics port`);
  };
  probe("startupProbe", "/healthz");
  probe("livenessProbe", "/healthz");
  probe("readinessProbe", "/readyz");
  for (const svc of byKind("Service")) {
    for (const p of svc.spec?.ports ?? []) {
      if (typeof p.targetPort === "string" && !ports.some((x) => x.name === p.targetPort)) problem(idOf(svc), `targetPort ${p.targetPort} names no container port`);
    }
  }
  for (const e of one("PodMonitor")?.spec?.podMetricsEndpoints ?? []) {
    if (e.port !== undefined && !ports.some((x) => x.name === e.port)) problem("PodMonitor/tally", `port ${e.port} names no container port`);
  }

  // Restricted Pod Security Standard.
  const psc = pod.securityContext ?? {};
  const csc = c.securityContext ?? {};
  if (psc.runAsNonRoot !== true && csc.runAsNonRoot !== true) problem(S, "runAsNonRoot must be true");
  if ((csc.runAsUser ?? psc.runAsUser) === 0) problem(S, "runAsUser 0");
  const seccomp = csc.seccompProfile?.type ?? psc.seccompProfile?.type;
  if (!["RuntimeDefault", "Localhost"].includes(seccomp)) problem(S, "seccompProfile must be RuntimeDefault");
  if (csc.allowPrivilegeEscalation !== false) problem(S, "allowPrivilegeEscalation must be false");
  if (csc.readOnlyRootFilesystem !== true) problem(S, "readOnlyRootFilesystem must be true");
  if (!(csc.capabilities?.drop ?? []).includes("ALL")) problem(S, "capabilities must drop ALL");
  if ((csc.capabilities?.add ?? []).some((x) => x !== "NET_BIND_SERVICE")) problem(S, "capabilities.add beyond NET_BIND_SERVICE");
  if (csc.privileged) problem(S, "privileged");
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) problem(S, "host namespaces");
  if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory || !c.resources?.limits?.memory) {
    problem(S, "resources: requests.cpu, requests.memory and limits.memory are required");
  }
  if (!(pod.topologySpreadConstraints ?? []).length) problem(S, "no topologySpreadConstraints");
  for (const t of pod.topologySpreadConstraints ?? []) {
    if (!matches(t.labelSelector?.matchLabels, podLabels)) problem(S, `topology spread on ${t.topologyKey} does not select the pods`);
  }
  if (!(sts.spec.volumeClaimTemplates ?? []).length) problem(S, "no volumeClaimTemplates (state volume)");

  // Graceful termination above shutdown.timeout.
  const timeout = parseDurationSeconds(cfg.shutdown?.timeout ?? "30s");
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (!(grace >= timeout + 10)) problem(S, `terminationGracePeriodSeconds ${grace} must be >= shutdown.timeout (${timeout}s) + 10`);

  // Environment and --set: every TALLY_* variable must name a configuration key
  // (tally refuses to start on an unknown one); instance_id from the pod name.
  if (pod.enableServiceLinks !== false) problem(S, "enableServiceLinks must be false (service links add TALLY_* variables)");
  const env = c.env ?? [];
  for (const e of env) {
    if (!e.name.startsWith("TALLY_")) continue;
    const ok = [...keys].some((k) => envName(k) === e.name) ||
      ["TALLY_KAFKA_", "TALLY_CONSUMER_", "TALLY_PRODUCER_"].some((p) => e.name.startsWith(p) && e.name.length > p.length);
    if (!ok) problem(S, `env ${e.name} names no configuration key of ${opts.config}`);
  }
  if ((c.envFrom ?? []).length) problem(S, "envFrom: every variable must be named (an unknown TALLY_* stops tally)");
  const instance = env.find((e) => e.name === "TALLY_INSTANCE_ID");
  if (instance?.valueFrom?.fieldRef?.fieldPath !== "metadata.name") problem(S, "TALLY_INSTANCE_ID must come from metadata.name");
  const args = c.args ?? [];
  args.forEach((a, i) => {
    if (args[i - 1] === "--set") {
      const k = a.split("=")[0];
      if (!keys.has(k) && !/^(kafka|consumer|producer)\./.test(k)) problem(S, `--set ${k}: no such configuration key`);
    }
  });

  // Volumes: ConfigMaps of the render, Strimzi's Secrets.
  const cms = new Set(byKind("ConfigMap").map((o) => o.metadata.name));
  const vols = pod.volumes ?? [];
  for (const v of vols) {
    for (const src of [v.configMap, ...(v.projected?.sources ?? []).map((s) => s.configMap)]) {
      if (src && !cms.has(src.name)) problem(S, `volume ${v.name}: ConfigMap ${src.name} is not in the render`);
    }
  }
  for (const m of c.volumeMounts ?? []) {
    if (!vols.some((v) => v.name === m.name) && !(sts.spec.volumeClaimTemplates ?? []).some((t) => t.metadata.name === m.name)) {
      problem(S, `volumeMount ${m.name} has no volume`);
    }
  }

  // Kafka: topics, user, secrets.
  const topics = new Map(byKind("KafkaTopic").map((t) => [t.spec?.topicName ?? t.metadata.name, t]));
  const want = [cfg.topics.clicks, cfg.topics.conversions, cfg.topics.commissions, cfg.topics.rejected,
    cfg.topics.unattributed, "tally-state-changelog"];
  for (const t of want) if (!topics.has(t)) problem("render", `no KafkaTopic for topic ${t}`);
  const parts = [cfg.topics.clicks, cfg.topics.conversions, "tally-state-changelog"].map((t) => topics.get(t)?.spec?.partitions);
  if (new Set(parts).size !== 1) problem("render", `inputs and changelog must have the same partition count (clicks, conversions, tally-state-changelog: ${parts.join(", ")})`);
  const cl = topics.get("tally-state-changelog");
  if (cl) {
    if (cl.spec.config?.["cleanup.policy"] !== "compact") problem("KafkaTopic/tally-state-changelog", "cleanup.policy must be compact");
    if (Number(cl.spec.config?.["min.insync.replicas"]) !== 2) problem("KafkaTopic/tally-state-changelog", "min.insync.replicas must be 2");
    if (cl.spec.replicas !== 3) problem("KafkaTopic/tally-state-changelog", "replicas must be 3");
  }
  if (sts.spec.replicas > (parts[0] ?? 0)) problem(S, `replicas ${sts.spec.replicas} above the ${parts[0]} input partitions: extra pods idle`);
  const user = one("KafkaUser");
  if (user) {
    const cluster = user.metadata.labels?.["strimzi.io/cluster"];
    for (const t of byKind("KafkaTopic")) {
      if (t.metadata.labels?.["strimzi.io/cluster"] !== cluster) problem(idOf(t), `strimzi.io/cluster differs from the KafkaUser's ${cluster}`);
    }
    const acls = user.spec?.authorization?.acls ?? [];
    const allows = (type, name, op, patternType = "literal") => acls.some((a) =>
      a.resource?.type === type && (type === "cluster" || a.resource?.name === name) &&
      (type === "cluster" || (a.resource?.patternType ?? "literal") === patternType) &&
      (a.operations ?? []).includes(op) && (a.type ?? "allow") === "allow");
    const need = [];
    for (const t of [cfg.topics.clicks, cfg.topics.conversions]) need.push(["topic", t, "Read"], ["topic", t, "Describe"]);
    for (const t of [cfg.topics.commissions, cfg.topics.rejected, cfg.topics.unattributed]) need.push(["topic", t, "Write"], ["topic", t, "Describe"]);
    for (const op of ["Read", "Write", "Describe", "Create", "DescribeConfigs"]) need.push(["topic", "tally-state-changelog", op]);
    need.push(["group", cfg.group_id, "Read"], ["transactionalId", "tally-", "Write", "prefix"],
      ["transactionalId", "tally-", "Describe", "prefix"], ["cluster", "", "IdempotentWrite"]);
    for (const n of need) if (!allows(...n)) problem(idOf(user), `no ACL allowing ${n[2]} on ${n[0]} ${n[1]}${n[3] ? " (prefix)" : ""}`);
    if (!String(sts.metadata.name + "-0").startsWith("tally-")) problem(S, "pod names must start with the transactionalId prefix tally-");
    const pw = env.find((e) => e.name === "TALLY_KAFKA_SASL_PASSWORD")?.valueFrom?.secretKeyRef;
    if (user.spec?.authentication?.type === "scram-sha-512") {
      if (pw?.name !== user.metadata.name || pw?.key !== "password") problem(S, `TALLY_KAFKA_SASL_PASSWORD must come from Secret ${user.metadata.name} key password (the KafkaUser's)`);
      const u = env.find((e) => e.name === "TALLY_KAFKA_SASL_USERNAME")?.value;
      if (u !== user.metadata.name) problem(S, `TALLY_KAFKA_SASL_USERNAME must be ${user.metadata.name}`);
    }
    const ca = vols.find((v) => v.secret?.secretName === `${cluster}-cluster-ca-cert`);
    if (!ca) problem(S, `no volume from Secret ${cluster}-cluster-ca-cert (Strimzi's cluster CA)`);
    else {
      const mount = (c.volumeMounts ?? []).find((m) => m.name === ca.name);
      const item = (ca.secret.items ?? [{ key: "ca.crt", path: "ca.crt" }]).find((i) => i.key === "ca.crt");
      const loc = env.find((e) => e.name === "TALLY_KAFKA_SSL_CA_LOCATION")?.value;
      if (!mount || !item || loc !== `${mount.mountPath}/${item.path}`) problem(S, "TALLY_KAFKA_SSL_CA_LOCATION must be the mounted ca.crt");
    }
    const bootstrap = env.find((e) => e.name === "TALLY_KAFKA_BOOTSTRAP_SERVERS")?.value ?? "";
    if (!bootstrap.startsWith(`${cluster}-kafka-bootstrap`) || !bootstrap.endsWith(":9093")) problem(S, `bootstrap ${bootstrap} is not ${cluster}-kafka-bootstrap...:9093`);
  }
}

// ---- commands ----------------------------------------------------------------

async function manifests(argv) {
  const file = argv[0];
  const opts = { config: null };
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === "--config") opts.config = argv[++i];
    else if (argv[i] === "--namespace") opts.namespace = argv[++i];
    else if (argv[i] === "--replicas") opts.replicas = Number(argv[++i]);
    else if (argv[i] === "--pinned-image") opts.pinnedImage = true;
    else throw new Error(`unknown option ${argv[i]}`);
  }
  const objs = readYamlDocs(file);
  if (!objs.length) problem(file, "no objects rendered");
  let builtin = 0, custom = 0;
  for (const o of objs) {
    if (!o.apiVersion || !o.kind) { problem(file, "an object without apiVersion/kind"); continue; }
    const check = CUSTOM[`${o.apiVersion}/${o.kind}`];
    if (check) { check(o); custom++; continue; }
    if (await validateBuiltin(o)) builtin++;
    else problem(idOf(o), `${o.apiVersion} ${o.kind}: no schema to validate it against`);
  }
  if (opts.config) checkWhole(objs, opts);
  return `${objs.length} objects (${builtin} against the Kubernetes OpenAPI schema, ${custom} custom resources)`;
}

function alerts(argv) {
  const [alertsFile, testsFile, runbookFile] = argv;
  const rules = YAML.parse(fs.readFileSync(alertsFile, "utf8")).groups.flatMap((g) => g.rules);
  const tests = YAML.parse(fs.readFileSync(testsFile, "utf8")).tests ?? [];
  const firing = new Set(tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => (a.exp_alerts ?? []).length).map((a) => a.alertname)));
  const silent = new Set(tests.flatMap((t) => (t.alert_rule_test ?? []).filter((a) => !(a.exp_alerts ?? []).length).map((a) => a.alertname)));
  // GitHub's anchors: the heading lower-cased, spaces as '-', punctuation dropped.
  const anchors = new Set(fs.readFileSync(runbookFile, "utf8").split("\n").filter((l) => /^#{1,6} /.test(l))
    .map((l) => l.replace(/^#+ /, "").trim().toLowerCase().replace(/[^\w\- ]/g, "").replace(/ /g, "-")));
  let n = 0;
  for (const r of rules.filter((x) => x.alert)) {
    n++;
    checkAlertAnnotations(`alert ${r.alert}`, r);
    const anchor = String(r.annotations?.runbook_url ?? "").split("#")[1];
    if (!anchors.has(anchor)) problem(`alert ${r.alert}`, `${runbookFile} has no section #${anchor}`);
    if (!firing.has(r.alert)) problem(`alert ${r.alert}`, `no rule test in ${testsFile} in which it fires`);
    if (!silent.has(r.alert)) problem(`alert ${r.alert}`, `no rule test in ${testsFile} in which it stays silent`);
  }
  return `${n} alerts: severity, summary, runbook_url, runbook section, firing and silent rule tests`;
}

function extract(argv) {
  const [file, outDir] = argv;
  const objs = readYamlDocs(file);
  const sts = objs.find((o) => o.kind === "StatefulSet");
  const c = sts.spec.template.spec.containers.find((x) => x.name === "tally");
  const cms = new Map(objs.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o]));
  const vols = new Map(sts.spec.template.spec.volumes.map((v) => [v.name, v]));
  const mounts = [];
  for (const m of c.volumeMounts) {
    const dir = path.join(outDir, m.mountPath);
    fs.mkdirSync(dir, { recursive: true });
    mounts.push([m.mountPath, dir]);
    const v = vols.get(m.name);
    if (!v) continue;  // the volumeClaimTemplate: an empty folder
    for (const src of [v.configMap, ...(v.projected?.sources ?? []).map((s) => s.configMap)].filter(Boolean)) {
      for (const [k, data] of Object.entries(cms.get(src.name)?.data ?? {})) fs.writeFileSync(path.join(dir, k), data);
    }
    if (v.secret) for (const it of v.secret.items ?? []) fs.writeFileSync(path.join(dir, it.path), "");
  }
  mounts.sort((a, b) => b[0].length - a[0].length);
  // A path under a mount (alone or as the value of key=value) moves under
  // OUTDIR; the longest mount wins, and each string is mapped once.
  const mapOne = (p) => {
    for (const [from, to] of mounts) if (p === from || p.startsWith(`${from}/`)) return to + p.slice(from.length);
    return p;
  };
  const mapPath = (s) => {
    const eq = s.indexOf("=");
    return eq > 0 && !s.startsWith("/") ? `${s.slice(0, eq + 1)}${mapOne(s.slice(eq + 1))}` : mapOne(s);
  };
  fs.writeFileSync(path.join(outDir, "args"), (c.args ?? []).map(mapPath).join("\n") + "\n");
  const env = (c.env ?? []).map((e) => {
    let v = e.value;
    if (v === undefined && e.valueFrom?.fieldRef?.fieldPath === "metadata.name") v = `${sts.metadata.name}-0`;
    if (v === undefined) v = "placeholder-from-secret";
    return `${e.name}=${mapPath(v)}`;
  });
  fs.writeFileSync(path.join(outDir, "env"), env.join("\n") + "\n");
  return `container laid out under ${outDir}`;
}

const [cmd, ...rest] = process.argv.slice(2);
const commands = { manifests, alerts, extract };
if (!commands[cmd]) {
  console.error("usage: node validate.mjs manifests|alerts|extract ...");
  process.exit(2);
}
try {
  const summary = await commands[cmd](rest);
  if (problems.length) {
    for (const p of problems) console.error(`  FAIL ${p}`);
    console.error(`${cmd}: ${problems.length} problem(s)`);
    process.exit(1);
  }
  console.log(`${cmd}: ok: ${summary}`);
} catch (e) {
  console.error(`${cmd}: error: ${e.stack ?? e}`);
  process.exit(1);
}
