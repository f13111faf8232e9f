#!/usr/bin/env bash
# Local Redis, Kafka and Docker for the skroutz-infra tests and CI (Debian 12, run as root).
#
#   scripts/services.sh install                    Debian packages the services and tests need
#   scripts/services.sh up     [redis|kafka|docker|all]...   start and wait until usable (default all)
#   scripts/services.sh down   [redis|kafka|docker|all]...   stop (default all)
#   scripts/services.sh status [redis|kafka|docker|all]...   exit 0 if all running, 3 if not
#   scripts/services.sh kafka-topics ARGS...       Kafka's TopicCommand against the local broker
#
# `up` on a running service is a no-op; `down` on a stopped one too. Either can be repeated.
#
# Environment:
#   SKROUTZ_SERVICES_DIR     state, pids, logs, data and the Kafka jar cache
#                            (default /var/tmp/skroutz-infra-services, shared by all clones)
#   REDIS_PORT               Redis on 127.0.0.1 (default 6379)
#   KAFKA_PORT               Kafka PLAINTEXT listener on 127.0.0.1 (default 9092)
#   KAFKA_CONTROLLER_PORT    KRaft CONTROLLER listener on 127.0.0.1 (default 9093)
#   KAFKA_HEAP_OPTS          broker heap (default -Xms256m -Xmx512m)
#   SKROUTZ_SERVICES_TIMEOUT seconds `up` waits for one service (default 60 redis, 120 kafka/docker)
#
# Layout under $SKROUTZ_SERVICES_DIR: redis/{redis.pid,redis.log}, kafka/{kafka.pid,kafka.out,
# logs/server.log,data/}, kafka-libs/ (jars from scripts/kafka/pom.xml), docker/{dockerd.pid,
# dockerd.log}. Docker keeps its images in its default data root, /var/lib/docker.
#
# Docker networking: dockerd runs with --iptables=false --bridge=none, so there is no "bridge"
# network and no NAT. `--network none` is the mode to use: the container gets loopback only.
# Leaving --network out (or asking for "bridge") also runs, and gives the same loopback-only
# namespace on this engine (20.10). `--network host` works too and shares the host's network,
# which is the only way for a container to reach 127.0.0.1 services such as Redis or Kafka.
# Nothing can be pulled; the test image is built locally:
#   docker run --rm --network none skroutz-infra-test/busybox:latest echo ok
set -euo pipefail

readonly SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly REPO_DIR="$(dirname "$SCRIPT_DIR")"
readonly STATE_DIR="${SKROUTZ_SERVICES_DIR:-/var/tmp/skroutz-infra-services}"

readonly REDIS_PORT="${REDIS_PORT:-6379}"
readonly KAFKA_PORT="${KAFKA_PORT:-9092}"
readonly KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
readonly KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
readonly KAFKA_BOOTSTRAP="127.0.0.1:${KAFKA_PORT}"
readonly KAFKA_LIBS="$STATE_DIR/kafka-libs"
readonly KAFKA_CONF_DIR="$SCRIPT_DIR/kafka"
readonly KAFKA_READY_TOPIC="__skroutz_ready"

readonly DOCKER_IMAGE="skroutz-infra-test/busybox:latest"
readonly DOCKER_FIXTURE="$REPO_DIR/test/fixtures/docker/busybox"
readonly DOCKER_SOCK="/var/run/docker.sock"

readonly SERVICES=(redis kafka docker)

log() { printf '[services] %s\n' "$*" >&2; }

die() {
  printf '[services] error: %s\n' "$*" >&2
  exit 1
}

# die_with_log LOGFILE MESSAGE: fail and show the end of the service's log.
die_with_log() {
  local file="$1"
  shift
  printf '[services] error: %s\n' "$*" >&2
  if [[ -s "$file" ]]; then
    printf '[services] last lines of %s:\n' "$file" >&2
    tail -n 40 "$file" | sed 's/^/    /' >&2
  fi
  exit 1
}

timeout_for() { echo "${SKROUTZ_SERVICES_TIMEOUT:-$1}"; }

# pid_alive PIDFILE PATTERN: the pid in PIDFILE is running and its command line matches.
pid_alive() {
  local pidfile="$1" pattern="$2" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern"
}

read_pid() { cat "$1" 2>/dev/null || true; }

# stop_pid PIDFILE PATTERN NAME SECONDS: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pidfile="$1" pattern="$2" name="$3" seconds="$4" pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid="$(<"$pidfile")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < seconds * 4; i++)); do
    [[ -d "/proc/$pid" ]] || break
    sleep 0.25
  done
  if [[ -d "/proc/$pid" ]]; then
    log "$name did not stop within ${seconds}s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

# with_lock NAME CMD...: serialise up/down of one service across concurrent callers.
# The lock is fd 9: every daemon started under it must get `9>&-`, or it holds the lock forever.
with_lock() {
  local name="$1"
  shift
  mkdir -p "$STATE_DIR/locks"
  (
    flock -w 600 9 || die "timed out waiting for $STATE_DIR/locks/$name.lock"
    "$@"
  ) 9>"$STATE_DIR/locks/$name.lock"
}

need_cmd() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 ||
      die "'$cmd' not found; run: $0 install"
  done
}

# ---------------------------------------------------------------------------- install

# ruby and ruby-redis run test/rafka/ruby/rafka_rb_flows.rb, the client side of rafka's
# compatibility contract (rafka-rb on redis-rb 4.8).
readonly APT_PACKAGES=(redis-server docker.io busybox-static btrfs-progs rsync chromium debhelper
  dpkg-dev fakeroot curl iproute2 systemd adduser ruby ruby-redis)

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Another apt-get may be running (image provisioning, a parallel job): wait, do not fight it.
wait_for_apt() {
  local i
  for ((i = 0; i < 600; i++)); do
    pgrep -x 'apt-get|apt|dpkg|unattended-upgr' >/dev/null 2>&1 || return 0
    ((i % 30 == 0)) && log "waiting for another apt-get/dpkg to finish"
    sleep 1
  done
  die "apt-get/dpkg still busy after 600s"
}

cmd_install() {
  [[ $EUID -eq 0 ]] || die "install must run as root"
  local missing=() pkg
  wait_for_apt
  for pkg in "${APT_PACKAGES[@]}"; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  if ((${#missing[@]} == 0)); then
    log "all packages already installed"
    return 0
  fi
  log "installing: ${missing[*]}"
  local apt=(apt-get -o DPkg::Lock::Timeout=600 -y -q)
  export DEBIAN_FRONTEND=noninteractive
  "${apt[@]}" update
  wait_for_apt
  "${apt[@]}" install --no-install-recommends "${missing[@]}"
}

# ------------------------------------------------------------------------------ redis

readonly REDIS_DIR="$STATE_DIR/redis"
readonly REDIS_PID="$REDIS_DIR/redis.pid"
readonly REDIS_LOG="$REDIS_DIR/redis.log"

redis_ping() {
  [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

redis_running() { pid_alive "$REDIS_PID" redis-server; }

redis_up() {
  need_cmd redis-server redis-cli
  if redis_running && redis_ping; then
    log "redis already running on 127.0.0.1:$REDIS_PORT (pid $(read_pid "$REDIS_PID"))"
    return 0
  fi
  if ! redis_running && redis_ping; then
    log "redis on 127.0.0.1:$REDIS_PORT answers but was not started by this script; using it"
    return 0
  fi
  mkdir -p "$REDIS_DIR/data"
  if ! redis_running; then
    rm -f "$REDIS_PID"
    log "starting redis on 127.0.0.1:$REDIS_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
      --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR/data" \
      --save '' --appendonly no --protected-mode yes </dev/null >>"$REDIS_LOG" 2>&1 9>&- ||
      die_with_log "$REDIS_LOG" "redis-server failed to start"
  fi
  local deadline=$((SECONDS + $(timeout_for 60)))
  until redis_ping; do
    if ((SECONDS >= deadline)); then
      die_with_log "$REDIS_LOG" "redis did not answer PING within $(timeout_for 60)s"
    fi
    # The daemon writes its pidfile right after forking; give it a moment before judging.
    if ((SECONDS > 2)) && ! redis_running; then
      die_with_log "$REDIS_LOG" "redis-server exited during startup"
    fi
    sleep 0.2
  done
  log "redis ready on 127.0.0.1:$REDIS_PORT (pid $(read_pid "$REDIS_PID"))"
}

# SIGTERM makes redis shut down cleanly; with save "" it writes nothing.
redis_down() { stop_pid "$REDIS_PID" redis-server redis 30; }

redis_status() {
  if redis_running && redis_ping; then
    echo "redis   running  pid $(read_pid "$REDIS_PID")  127.0.0.1:$REDIS_PORT  log $REDIS_LOG"
  elif redis_ping; then
    echo "redis   running  (not started by this script)  127.0.0.1:$REDIS_PORT"
  else
    echo "redis   stopped  127.0.0.1:$REDIS_PORT  log $REDIS_LOG"
    return 3
  fi
}

# ------------------------------------------------------------------------------ kafka

readonly KAFKA_DIR="$STATE_DIR/kafka"
readonly KAFKA_PID="$KAFKA_DIR/kafka.pid"
readonly KAFKA_OUT="$KAFKA_DIR/kafka.out"
readonly KAFKA_LOG_DIR="$KAFKA_DIR/logs"
readonly KAFKA_DATA="$KAFKA_DIR/data"
readonly KAFKA_PROPS="$KAFKA_DIR/server.properties"

# Gather the jars once per pom.xml content into $KAFKA_LIBS (shared across clones).
kafka_libs() {
  local pom="$KAFKA_CONF_DIR/pom.xml" want have tmp
  want="$(sha256sum "$pom" | cut -d' ' -f1)"
  have="$(cat "$KAFKA_LIBS/.pom.sha256" 2>/dev/null || true)"
  [[ "$want" == "$have" ]] && return 0
  need_cmd mvn
  log "downloading Kafka jars from Maven Central into $KAFKA_LIBS"
  tmp="$KAFKA_LIBS.tmp.$$"
  rm -rf "$tmp"
  mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" >&2 ||
    die "mvn could not fetch the Kafka jars (see output above)"
  echo "$want" >"$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
}

# kafka_java [JAVA OPTIONS] MAINCLASS ARGS...: run a class from the cached jars, tool logging.
kafka_java() {
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_CONF_DIR/tools-log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_running() { pid_alive "$KAFKA_PID" 'kafka\.Kafka'; }

kafka_port_open() {
  ss -Hltn "sport = :$KAFKA_PORT" 2>/dev/null | grep -q .
}

# A random cluster id in Kafka's format: 16 bytes, URL-safe base64 without padding. One in 64
# such ids starts with '-', which the storage tool would read as an option after `-t`; Kafka's own
# ids never start with one, so neither do these (and the id is passed as `--cluster-id=`).
kafka_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [ "${id:0:1}" != "-" ] && break
  done
  printf '%s' "$id"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DIR" "$KAFKA_LOG_DIR"
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
    "$KAFKA_CONF_DIR/server.properties" >"$KAFKA_PROPS"
}

# Ready means a client can create a topic, produce to it and consume from it in a group.
kafka_probe() {
  local token="ready-$$-$RANDOM" got
  kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --create --if-not-exists --topic "$KAFKA_READY_TOPIC" --partitions 1 \
    --replication-factor 1 >/dev/null 2>>"$KAFKA_DIR/probe.log" || return 1
  echo "$token" | kafka_java kafka.tools.ConsoleProducer --bootstrap-server "$KAFKA_BOOTSTRAP" \
    --topic "$KAFKA_READY_TOPIC" --producer-property acks=all \
    --producer-property delivery.timeout.ms=20000 \
    --producer-property request.timeout.ms=10000 >/dev/null 2>>"$KAFKA_DIR/probe.log" || return 1
  got="$(kafka_java org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$KAFKA_READY_TOPIC" \
    --group "__skroutz_ready_$$" --from-beginning --max-messages 1 --timeout-ms 20000 \
    2>>"$KAFKA_DIR/probe.log" || true)"
  # The data dir is new on every start, so any message here came from this start's probes.
  [[ "$got" == ready-* ]]
}

# kafka_fail MESSAGE: the broker's first errors (the cause, not the stack trace) and the end
# of its stdout (JVM failures land there), then exit.
kafka_fail() {
  local server_log="$KAFKA_LOG_DIR/server.log"
  printf '[services] error: %s\n' "$1" >&2
  if [[ -s "$server_log" ]] && grep -q -E '\] (ERROR|FATAL) |Caused by:' "$server_log"; then
    printf '[services] first errors in %s:\n' "$server_log" >&2
    grep -m 8 -E '\] (ERROR|FATAL) |Caused by:' "$server_log" | cut -c1-300 | sed 's/^/    /' >&2
  fi
  if [[ -s "$KAFKA_DIR/probe.log" ]]; then
    printf '[services] last lines of %s:\n' "$KAFKA_DIR/probe.log" >&2
    tail -n 5 "$KAFKA_DIR/probe.log" | cut -c1-300 | sed 's/^/    /' >&2
  fi
  die_with_log "$KAFKA_OUT" "full broker log: $server_log"
}

kafka_up() {
  need_cmd java ss
  if kafka_running; then
    log "kafka already running on $KAFKA_BOOTSTRAP (pid $(read_pid "$KAFKA_PID"))"
    return 0
  fi
  kafka_port_open && die "port $KAFKA_PORT is taken by another process; set KAFKA_PORT"
  kafka_libs
  rm -f "$KAFKA_PID"
  # A fresh cluster on every start: tests never see topics from an earlier run.
  rm -rf "$KAFKA_DATA" "$KAFKA_LOG_DIR"
  kafka_write_config
  : >"$KAFKA_OUT"
  : >"$KAFKA_DIR/probe.log"
  kafka_java kafka.tools.StorageTool format --cluster-id="$(kafka_cluster_id)" -c "$KAFKA_PROPS" \
    >>"$KAFKA_OUT" 2>&1 || die_with_log "$KAFKA_OUT" "kafka storage format failed"

  log "starting kafka on $KAFKA_BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several options
  setsid nohup java $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_LOG_DIR" \
    -Dlog4j.configuration="file:$KAFKA_CONF_DIR/log4j.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" </dev/null >>"$KAFKA_OUT" 2>&1 9>&- &
  echo $! >"$KAFKA_PID"

  local limit deadline
  limit="$(timeout_for 120)"
  deadline=$((SECONDS + limit))
  until kafka_port_open && kafka_probe; do
    if ! kafka_running; then
      rm -f "$KAFKA_PID"
      kafka_fail "kafka exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      kafka_fail "kafka was not usable within ${limit}s (probe output: $KAFKA_DIR/probe.log)"
    fi
    sleep 1
  done
  log "kafka ready on $KAFKA_BOOTSTRAP (pid $(read_pid "$KAFKA_PID"))"
}

kafka_down() {
  stop_pid "$KAFKA_PID" 'kafka\.Kafka' kafka 60
}

kafka_status() {
  if kafka_running; then
    echo "kafka   running  pid $(read_pid "$KAFKA_PID")  $KAFKA_BOOTSTRAP  log $KAFKA_LOG_DIR/server.log"
  else
    echo "kafka   stopped  $KAFKA_BOOTSTRAP  log $KAFKA_LOG_DIR/server.log"
    return 3
  fi
}

cmd_kafka_topics() {
  need_cmd java
  kafka_libs
  local arg
  for arg in "$@"; do
    if [[ "$arg" == --bootstrap-server* ]]; then
      exec java -Djava.awt.headless=true -Xmx256m \
        -Dlog4j.configuration="file:$KAFKA_CONF_DIR/tools-log4j.properties" \
        -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand "$@"
    fi
  done
  exec java -Djava.awt.headless=true -Xmx256m \
    -Dlog4j.configuration="file:$KAFKA_CONF_DIR/tools-log4j.properties" \
    -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"
}

# ----------------------------------------------------------------------------- docker

readonly DOCKER_DIR="$STATE_DIR/docker"
readonly DOCKER_PID="$DOCKER_DIR/dockerd.pid"
readonly DOCKER_LOG="$DOCKER_DIR/dockerd.log"
# dockerd starts its own containerd when none runs on /run/containerd; this is its pidfile.
readonly CONTAINERD_PID="/var/run/docker/containerd/containerd.pid"

docker_api_ok() {
  [[ -S "$DOCKER_SOCK" ]] &&
    [[ "$(curl -fsS --max-time 5 --unix-socket "$DOCKER_SOCK" http://localhost/_ping 2>/dev/null)" == "OK" ]]
}

docker_running() { pid_alive "$DOCKER_PID" dockerd; }

docker_image() {
  local ctx out rc=0
  ctx="$(mktemp -d)"
  cp "$DOCKER_FIXTURE/Dockerfile" "$ctx/Dockerfile"
  cp /bin/busybox "$ctx/busybox"
  # The legacy builder needs no buildx plugin (the CLI may be newer than Debian's engine);
  # --network none because there is no bridge. Unchanged inputs hit the build cache.
  out="$(DOCKER_BUILDKIT=0 docker build --network none -t "$DOCKER_IMAGE" "$ctx" 2>&1)" || rc=$?
  rm -rf "$ctx"
  if ((rc != 0)); then
    printf '%s\n' "$out" | tail -n 20 >&2
    die "docker build of $DOCKER_IMAGE failed (Dockerfile: $DOCKER_FIXTURE/Dockerfile)"
  fi
}

docker_smoke() {
  local out
  out="$(docker run --rm --network none "$DOCKER_IMAGE" echo ok 2>&1)" ||
    die_with_log "$DOCKER_LOG" "docker run $DOCKER_IMAGE failed: $out"
  [[ "$out" == "ok" ]] || die "docker run $DOCKER_IMAGE printed '$out', expected 'ok'"
}

docker_up() {
  need_cmd dockerd docker curl
  [[ -x /bin/busybox ]] || die "/bin/busybox not found; run: $0 install"
  if docker_api_ok; then
    if docker_running; then
      log "dockerd already running (pid $(read_pid "$DOCKER_PID"))"
    else
      log "a docker engine not started by this script answers on $DOCKER_SOCK; using it"
    fi
  else
    [[ $EUID -eq 0 ]] || die "dockerd must be started as root"
    mkdir -p "$DOCKER_DIR"
    if ! docker_running; then
      rm -f "$DOCKER_PID"
      log "starting dockerd"
      setsid nohup dockerd --iptables=false --bridge=none --storage-driver=overlay2 \
        --pidfile "$DOCKER_PID" </dev/null >>"$DOCKER_LOG" 2>&1 9>&- &
      local pid=$! limit deadline
      limit="$(timeout_for 120)"
      deadline=$((SECONDS + limit))
      until docker_api_ok; do
        [[ -d "/proc/$pid" ]] || die_with_log "$DOCKER_LOG" "dockerd exited during startup"
        ((SECONDS < deadline)) || die_with_log "$DOCKER_LOG" "docker API not up within ${limit}s"
        sleep 0.5
      done
    fi
  fi
  docker_image
  docker_smoke
  log "docker ready on $DOCKER_SOCK; image $DOCKER_IMAGE (run with --network none)"
}

docker_down() {
  stop_pid "$DOCKER_PID" dockerd dockerd 60
  # dockerd stops the containerd it started; make sure, in case dockerd was killed.
  stop_pid "$CONTAINERD_PID" containerd containerd 20
}

docker_status() {
  if docker_running && docker_api_ok; then
    echo "docker  running  pid $(read_pid "$DOCKER_PID")  $DOCKER_SOCK  log $DOCKER_LOG"
  elif docker_api_ok; then
    echo "docker  running  (not started by this script)  $DOCKER_SOCK"
  else
    echo "docker  stopped  $DOCKER_SOCK  log $DOCKER_LOG"
    return 3
  fi
}

# ----------------------------------------------------------------------------- routing

# expand_services ARGS...: print the services named, "all" or nothing meaning all of them.
expand_services() {
  local name
  (($# > 0)) || set -- all
  for name in "$@"; do
    case "$name" in
      all) printf '%s\n' "${SERVICES[@]}" ;;
      redis | kafka | docker) echo "$name" ;;
      *) die "unknown service '$name' (expected redis, kafka, docker or all)" ;;
    esac
  done | awk '!seen[$0]++'
}

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}" services svc rc=0
  (($# > 0)) && shift
  case "$cmd" in
    install) cmd_install ;;
    up | down)
      services="$(expand_services "$@")"
      [[ "$cmd" == down ]] && services="$(tac <<<"$services")"
      for svc in $services; do
        with_lock "$svc" "${svc}_${cmd}"
      done
      ;;
    status)
      services="$(expand_services "$@")"
      for svc in $services; do
        "${svc}_status" || rc=3
      done
      return "$rc"
      ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
