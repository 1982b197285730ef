#!/usr/bin/env bash
# A real Prometheus (Debian's `prometheus`) scrapes a running tally during a
# load-generator run, with the shipped alerting and recording rules loaded.
# Asserts through its HTTP API what an SRE relies on:
#   - the target is up and the standard process_* series are there;
#   - events consumed, as Prometheus saw them, equal what the generator
#     produced, and commissions / unattributed / rejected equal tally's own
#     exit summary;
#   - the output latency histogram is populated (one observation per
#     commission), the commission counters add up;
#   - every alerting and recording rule of deploy/prometheus is loaded and
#     healthy, and a recording rule has produced a sample;
#   - every metric name a Grafana dashboard query uses is exported by this
#     scrape (its `# TYPE` lines: families with no sample yet count) or is a
#     recording rule or `up`.
# usage: prometheus_test.sh BIN_DIR SRC_DIR
BIN_DIR=$1
SRC_DIR=$2
source "$SRC_DIR/tests/integration/lib.sh"

command -v prometheus >/dev/null || { echo "prometheus not found (run make setup)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found (run make setup)" >&2; exit 1; }

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close();});'
}

# jq-like: prints the value of a JS expression over the JSON on stdin (`d`).
json() { node -e 'let t="";process.stdin.on("data",c=>t+=c).on("end",()=>{const d=JSON.parse(t);const v=('"$1"');console.log(typeof v==="object"?JSON.stringify(v):v);});'; }

PROM_PORT=$(free_port)
TALLY_PORT=$(free_port)
PROM="http://127.0.0.1:$PROM_PORT"

# query EXPR -> the value of the first sample of an instant query ("none" if empty)
query() {
  curl -fsS --get "$PROM/api/v1/query" --data-urlencode "query=$1" |
    json 'd.status==="success" && d.data.result.length ? d.data.result[0].value[1] : "none"'
}

start_devbroker 4
"$BIN_DIR/tally-loadgen" --bootstrap-servers "$BOOTSTRAP" --clicks 20000 --seed 11 \
    --truth "$WORK/truth.jsonl" 2>"$WORK/loadgen.log"
produced=$(grep -c '"partition"' "$WORK/truth.jsonl")
echo "produced $produced input messages" >&2

start_tally run --set "metrics.listen=127.0.0.1:$TALLY_PORT"
tally_pid=$TALLY_PID

cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $SRC_DIR/deploy/prometheus/alerts.yaml
  - $SRC_DIR/deploy/prometheus/recording.yaml
scrape_configs:
  - job_name: tally
    static_configs:
      - targets: ["127.0.0.1:$TALLY_PORT"]
        labels: {namespace: it}
EOF
promtool check config "$WORK/prometheus.yml" >&2
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

for _ in $(seq 1 100); do
  curl -fsS "$PROM/-/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$PROM/-/ready" >/dev/null || { echo "prometheus did not become ready" >&2; exit 1; }

# Until Prometheus has seen every produced message consumed (bounded).
consumed=none
for _ in $(seq 1 240); do
  consumed=$(query 'sum(tally_input_messages_total{job="tally"})')
  [ "$consumed" = "$produced" ] && break
  sleep 0.5
done
echo "prometheus: tally_input_messages_total = $consumed" >&2
[ "$consumed" = "$produced" ] || { echo "consumed $consumed, produced $produced" >&2; exit 1; }

fail=0
check() {  # check WHAT GOT WANT
  if [ "$2" = "$3" ]; then
    echo "ok: $1 = $2" >&2
  else
    echo "FAIL: $1 = $2, want $3" >&2
    fail=1
  fi
}

check 'up{job="tally"}' "$(query 'up{job="tally"}')" 1
rss=$(query 'process_resident_memory_bytes{job="tally"}')
check 'process_resident_memory_bytes > 1 MiB' "$(node -e "console.log(Number('$rss') > 1048576)")" true
check 'process_cpu_seconds_total present' "$(query 'count(process_cpu_seconds_total{job="tally"})')" 1
check 'tally_build_info present' "$(query 'count(tally_build_info{job="tally"})')" 1

# librdkafka's statistics (every 5 s): the broker round trip of the
# consumer's connection to the devbroker.
brokers=none
for _ in $(seq 1 30); do
  brokers=$(query 'count(tally_kafka_broker_rtt_avg_seconds{job="tally"})')
  [ "$brokers" != none ] && [ "$brokers" -ge 1 ] && break
  sleep 0.5
done
check 'brokers with a round trip figure >= 1' "$([ "$brokers" != none ] && [ "$brokers" -ge 1 ] && echo yes || echo "$brokers")" yes

# The scrape's text, for the dashboard check below (and the closing note).
curl -fsS "http://127.0.0.1:$TALLY_PORT/metrics" >"$WORK/scrape.txt"

# Stop tally cleanly: its exit summary is the reference for the outputs.
kill -TERM "$tally_pid"
wait "$tally_pid" || { echo "tally exited non-zero after SIGTERM" >&2; exit 1; }
summary="$WORK/run.summary.json"
commissions=$(json_field "$summary" commissions_out)
unattributed=$(json_field "$summary" unattributed_out)
rejected=$(json_field "$summary" rejected)
echo "summary: commissions $commissions, unattributed $unattributed, rejected $rejected" >&2
[ "${commissions:-0}" -gt 0 ] || { echo "no commissions produced" >&2; exit 1; }

# Prometheus keeps the last scraped sample; everything was produced before
# the input counter reached its final value, so the last scrape of the
# drained instance already holds the final figures.
check 'outputs{topic="commissions"}' "$(query 'sum(last_over_time(tally_output_messages_total{job="tally",topic="commissions"}[5m]))')" "$commissions"
check 'outputs{topic="unattributed"}' "$(query 'sum(last_over_time(tally_output_messages_total{job="tally",topic="unattributed"}[5m]))')" "$unattributed"
check 'outputs{topic="rejected"}' "$(query 'sum(last_over_time(tally_output_messages_total{job="tally",topic="rejected"}[5m]))')" "$rejected"
check 'sum(tally_events_rejected_total) (by reason)' "$(query 'sum(last_over_time(tally_events_rejected_total{job="tally"}[5m]))')" "$rejected"
check 'sum(tally_commissions_total) (by status, model)' "$(query 'sum(last_over_time(tally_commissions_total{job="tally"}[5m]))')" "$commissions"
check 'sum(tally_unattributed_total) (by reason)' "$(query 'sum(last_over_time(tally_unattributed_total{job="tally"}[5m]))')" "$unattributed"
check 'latency histogram count{topic="commissions"}' "$(query 'last_over_time(tally_output_event_latency_seconds_count{job="tally",topic="commissions"}[5m])')" "$commissions"
check 'latency histogram +Inf bucket = count' "$(query 'last_over_time(tally_output_event_latency_seconds_bucket{job="tally",topic="commissions",le="+Inf"}[5m])')" "$commissions"
value=$(query 'sum(last_over_time(tally_commission_value_minor_units_total{job="tally"}[5m]))')
check 'commission value > 0' "$(node -e "console.log(Number('$value') > 0)")" true
check 'stage histogram: pipeline observed' "$(node -e "console.log(Number('$(query 'sum(last_over_time(tally_batch_stage_duration_seconds_count{job="tally",stage="pipeline"}[5m]))')') > 0)")" true
check 'rocksdb sst bytes present' "$(query 'count(last_over_time(tally_rocksdb_sst_files_bytes{job="tally"}[5m]))')" 1

# Rules: every alert and recording rule of deploy/prometheus loaded, healthy.
alerts_want=$(grep -c -- '- alert:' "$SRC_DIR/deploy/prometheus/alerts.yaml")
records_want=$(grep -c -- '- record:' "$SRC_DIR/deploy/prometheus/recording.yaml")
rules=$(curl -fsS "$PROM/api/v1/rules")
check 'alerting rules loaded' "$(echo "$rules" | json 'd.data.groups.flatMap(g=>g.rules).filter(r=>r.type==="alerting").length')" "$alerts_want"
check 'recording rules loaded' "$(echo "$rules" | json 'd.data.groups.flatMap(g=>g.rules).filter(r=>r.type==="recording").length')" "$records_want"
check 'rules not healthy' "$(echo "$rules" | json 'd.data.groups.flatMap(g=>g.rules).filter(r=>r.health!=="ok").map(r=>r.name+": "+r.lastError).join("; ")||"none"')" none
# (kind click and conversion; the rule needs two scrapes inside its window)
recorded=none
for _ in $(seq 1 20); do
  recorded=$(query 'count(tally:input_messages:rate5m{job="tally"})')
  [ "$recorded" = 2 ] && break
  sleep 0.5
done
check 'recording rule tally:input_messages:rate5m series' "$recorded" 2
# A healthy, drained instance pages nobody.
check 'page alerts firing' "$(curl -fsS "$PROM/api/v1/alerts" | json 'd.data.alerts.filter(a=>a.state==="firing"&&a.labels.severity==="page").map(a=>a.labels.alertname).join(",")||"none"')" none

# Dashboard: every metric name in every query is exported.
exported="$WORK/exported.txt"
{
  awk '$1=="#" && $2=="TYPE" {print $3; if ($4=="histogram") {print $3"_bucket"; print $3"_count"; print $3"_sum"}}' "$WORK/scrape.txt"
  grep -o 'record: [a-z_:0-9]*' "$SRC_DIR/deploy/prometheus/recording.yaml" | cut -d' ' -f2
  echo up
} | sort -u >"$exported"
for dash in "$SRC_DIR"/deploy/grafana/*.json; do
  missing=$(node -e '
    const d = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const known = new Set(require("fs").readFileSync(process.argv[2], "utf8").split("\n"));
    const exprs = [];
    const walk = (o) => { if (Array.isArray(o)) o.forEach(walk); else if (o && typeof o === "object") {
      if (typeof o.expr === "string") exprs.push(o.expr);
      if (o.query && typeof o.query.query === "string") exprs.push(o.query.query);
      else if (typeof o.query === "string" && o.type === "query") exprs.push(o.query);
      Object.values(o).forEach(walk); } };
    walk(d);
    if (exprs.length < 10) { console.log("only " + exprs.length + " queries found"); process.exit(0); }
    const bad = new Set();
    for (const e of exprs) {
      // Metric names: identifiers of ours (tally_*, tally:*, process_*) and up,
      // outside label matchers and strings.
      const stripped = e.replace(/"[^"]*"/g, "\"\"").replace(/\{[^}]*\}/g, "{}");
      for (const m of stripped.matchAll(/\b(tally[_:][a-z0-9_:]*|process_[a-z0-9_]*|up)\b/g)) {
        if (!known.has(m[1])) bad.add(m[1]);
      }
    }
    console.log([...bad].join(" "));' "$dash" "$exported")
  check "$(basename "$dash"): metric names not exported" "${missing:-none}" none
done

[ "$fail" = 0 ] || exit 1
echo "PASS"
