import Foundation

/// Keeps what runs in line with what is wanted: one `HostRunner` (one ControlMaster) per SSH host, fed the
/// tunnels wanted on it. Used by `fwd daemon` (desired state from the store) and `fwd run` (from the command line).
package actor Supervisor {
    let paths: FwdPaths
    let store: Store
    /// Every write of the supervisor and its runners goes through here, in order, off their event loops.
    nonisolated let writer: StoreWriter
    /// Login questions of every master, to the terminals waiting for their tunnels.
    package nonisolated let logins = LoginBroker()
    let options: SupervisorOptions
    private var runners: [String: HostRunner] = [:]
    private var fragmentInputs: String?
    private var resolvedHosts: [String: ResolvedHost] = [:]
    private var baseline = ResolvedHost(lines: [])
    /// Every tunnel an apply has wanted, by name (the latest definition): what `fwd run` marks down when it ends.
    private(set) var everWanted: [String: Tunnel] = [:]
    /// The last reconcile handed to `serially`; each new one waits for it.
    private var lastReconcile: Task<Void, Never>?
    /// Bumped per host with every update handed to its runner: a runner is dropped as idle only by the apply
    /// that handed it its last update.
    private var tickets: [String: Int] = [:]

    /// What the metrics show, following the committed writes (see `MetricsBoard`).
    package nonisolated let metrics: MetricsBoard
    /// Told of every committed state change, on the writer's thread: they must hand it on and return.
    private nonisolated let changeListeners = Locked<[@Sendable ([StateChange]) -> Void]>([])
    private var metricsServer: MetricsServer?
    nonisolated let hooks: Hooks
    nonisolated let notifier: DesktopNotifier

    package init(paths: FwdPaths, store: Store, options: SupervisorOptions = SupervisorOptions()) {
        self.paths = paths
        self.store = store
        let board = MetricsBoard(version: options.version)
        let listeners = changeListeners
        self.metrics = board
        self.writer = StoreWriter(store: store) { writes in
            let changes = board.committed(writes)
            guard !changes.isEmpty else { return }
            for listener in listeners.current { listener(changes) }
        }
        self.options = options
        hooks = Hooks(writer: writer)
        notifier = DesktopNotifier(writer: writer, interval: .seconds(options.notifyInterval))
        onChange { [hooks, notifier] in
            hooks.changed($0)
            notifier.changed($0)
        }
    }

    /// Adds a listener for state changes (hooks, notifications).
    package nonisolated func onChange(_ listener: @escaping @Sendable ([StateChange]) -> Void) {
        changeListeners.withLock { $0.append(listener) }
    }

    /// Serves the metrics where the config says (`[metrics] listen`), moving the listener when that changed and
    /// closing it when it is gone. A listener that cannot be opened is logged; the tunnels are not affected.
    package func serveMetrics(_ listen: MetricsListen?) {
        guard metricsServer?.listen != listen else { return }
        metricsServer?.stop()
        metricsServer = nil
        guard let listen else { return }
        do {
            let board = metrics
            metricsServer = try MetricsServer(listen) { board.exposition() }
            writer.enqueue(.log(.daemon, tunnel: nil, host: nil, message: "serving metrics on \(listen)"))
        } catch {
            writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "cannot serve metrics: \(error)"))
        }
    }

    /// Masters recorded by a supervisor that died without cleaning up (SIGKILL) keep running, bound to ports
    /// the new one needs. fwd reaps them rather than re-adopting them: a master that is not our child cannot be
    /// watched for exit, and re-adding forwards to a fresh master costs one reconnect.
    package func reapStaleMasters() throws {
        for record in try store.masters() {
            let pid = Int32(record.pid)
            if ProcessTable.startTime(of: pid) == record.startTime,
               ProcessTable.commandLine(of: pid).contains(where: { $0.hasSuffix("ssh") }) {
                ProcessTable.terminate(pid)
                writer.enqueue(.log(.master, tunnel: nil, host: record.host, message: "stopped ssh pid \(pid) left by a previous supervisor"))
            }
            unlink(record.socket)
            writer.enqueue(.removeMaster(host: record.host))
        }
        // Relay sockets of a supervisor that was killed (this one holds the lock, so none is in use).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: paths.controlDirectory)) ?? []
        where name.hasPrefix(AskpassRelay.socketPrefix) {
            unlink("\(paths.controlDirectory)/\(name)")
        }
    }

    /// Runs `body` once every earlier call's body has finished, in call order. A reconcile reads the desired state
    /// and then applies it across awaits (ssh -G, the runners), so two running at once could apply an older read
    /// after a newer one, and would write fwd's ssh_config files at the same time.
    package func serially<T: Sendable>(_ body: @escaping @Sendable () async -> T) async -> T {
        let previous = lastReconcile
        let task = Task {
            await previous?.value
            return await body()
        }
        lastReconcile = Task { _ = await task.value }
        return await task.value
    }

    /// The updates one apply handed to the runners, for `settle`.
    package struct Applied: Sendable {
        fileprivate var updates: [(host: String, ticket: Int, done: Settle)] = []
        package static let none = Applied()
    }

    /// Applies `wanted` (tunnels that should be up). `retry` names tunnels the user just asked for: they get
    /// another attempt even after a failure that is otherwise not retried. Returns once every runner has been
    /// handed its update, in order; `settle` then waits for their effects. Only the hand-over runs in
    /// `serially`, so a host whose master hangs holds up no other host's request.
    package func apply(_ config: FwdConfig, wanted: [Tunnel], retry: Set<String> = []) async -> Applied {
        for t in wanted { everWanted[t.name] = t }
        metrics.hosts(wanted)
        hooks.configure(config)
        notifier.configure(config)
        serveMetrics(config.monitoring.metricsListen)
        // The fragment (and a `ssh -G` per host) is redone only when fwd.toml or an ssh_config file ssh reads
        // (the user's, the system's, and what they include) changed: a warm `fwd up` on a live master should
        // cost the `-O forward`, not a round of ssh runs.
        let home = FwdPaths.passwdHome()
        let sshFiles = [paths.userSSHConfig, "/etc/ssh/ssh_config"].flatMap {
            SSHConfigAliases.walk(path: $0, home: home, skipping: [paths.fragment])
        }
        let inputs = ([FileSystem.read(config.path) ?? ""] + sshFiles.map { "\($0.path)\u{0}\($0.text)" }).joined(separator: "\u{0}")
        let changed = inputs != fragmentInputs || !FileSystem.exists(paths.fragment) || !FileSystem.exists(paths.controlDirectory)
        if changed {
            // What a master needs (the root config and the host blocks) is written before any master starts; the
            // tunnel blocks, which need a `ssh -G` per host, are completed below while masters connect.
            do {
                try SSHConfigFiles.writeFiles(config, paths: paths, resolved: resolvedHosts, baseline: baseline)
            } catch {
                writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "cannot write fwd's ssh_config: \(error)"))
            }
        }
        let byHost = Dictionary(grouping: wanted, by: \.host)
        var applied = Applied()
        func hand(_ host: String, _ runner: HostRunner, _ tunnels: [Tunnel], _ retry: Set<String>) {
            let ticket = (tickets[host] ?? 0) + 1
            tickets[host] = ticket
            applied.updates.append((host, ticket, runner.submit(tunnels, retry: retry)))
        }
        for (host, tunnels) in byHost {
            hand(host, runners[host] ?? newRunner(host, config: config, resolved: changed ? nil : resolvedHosts[host]), tunnels, retry)
        }
        for (host, runner) in runners where byHost[host] == nil { hand(host, runner, [], []) }
        guard changed else { return applied }
        do {
            (resolvedHosts, baseline) = try await SSHConfigFiles.resolveTunnelHosts(config, paths: paths)
            try SSHConfigFiles.writeFiles(config, paths: paths, resolved: resolvedHosts, baseline: baseline)
            fragmentInputs = inputs
            for (host, runner) in runners {
                if let r = resolvedHosts[host] { runner.resolved(r) }
            }
        } catch {
            resolvedHosts = [:]
            fragmentInputs = nil
            writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "cannot write fwd's ssh_config: \(error)"))
        }
        return applied
    }

    /// Waits until every runner of `applied` has recorded the resulting state (so a caller that reads the store
    /// next sees the request's effect, not an older state), then lets go of runners left with nothing to do.
    package func settle(_ applied: Applied) async {
        for update in applied.updates { await update.done.wait() }
        for update in applied.updates where tickets[update.host] == update.ticket {
            guard let runner = runners[update.host], await runner.isIdle,
                  tickets[update.host] == update.ticket, runners[update.host] === runner else { continue }
            runner.finish()
            runners[update.host] = nil
        }
    }

    /// A runner for `host`, told what `ssh -G` said for it when that is known and current.
    private func newRunner(_ host: String, config: FwdConfig, resolved: ResolvedHost?) -> HostRunner {
        let runner = HostRunner(host: host, entry: config.hosts[host], paths: paths, writer: writer, options: options, logins: logins)
        runners[host] = runner
        if let resolved { runner.resolved(resolved) }
        return runner
    }

    /// Probes the named tunnels (all when nil) now and records the results.
    package func check(_ names: Set<String>?) async {
        // At once on every host: a hung master holds up only its own tunnels' answers.
        await withTaskGroup(of: Void.self) { group in
            for runner in runners.values { group.addTask { await runner.check(names) } }
        }
    }

    /// Looks at the masters whose path `trigger` may have changed (the hosts of the named tunnels; all when nil),
    /// restarting those whose path is gone. One line per host says what was done.
    package func pathCheck(_ trigger: PathTrigger, tunnels names: Set<String>? = nil) async -> [String] {
        let hosts = names.map { Set($0.compactMap { everWanted[$0]?.host }) }
        let targets = runners.filter { hosts?.contains($0.key) ?? true }.sorted { $0.key < $1.key }.map(\.value)
        return await withTaskGroup(of: String.self) { group in
            for runner in targets {
                group.addTask { await runner.pathCheck(trigger) }
            }
            return await group.reduce(into: []) { $0.append($1) }.sorted()
        }
    }

    /// Hands `trigger` to every host without waiting for the checks: a burst of network events must reach every
    /// runner at once, and a check in flight must not hold up the next event (which may be the one that matters).
    package func notify(_ trigger: PathTrigger) {
        for runner in runners.values { runner.notify(trigger) }
    }

    /// Takes every master down and waits until no ssh process of ours is left.
    package func shutdown() async {
        await withTaskGroup(of: Void.self) { group in
            for runner in runners.values {
                group.addTask {
                    await runner.stop()
                    runner.finish()
                }
            }
        }
        runners = [:]
        serveMetrics(nil)
        // The last changes' hooks are queued once their writes commit; they get a little time, then are ended.
        await writer.flush()
        await hooks.finish(grace: .seconds(3))
        await writer.flush()
    }

    /// No host has a runner: nothing is wanted and no ssh runs.
    var isIdle: Bool { runners.isEmpty }
}
