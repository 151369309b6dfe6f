import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A supervisor process: `fwd daemon` (tunnels wanted in the store) or `fwd run NAME…` (tunnels named on
/// the command line, nothing else). Holds the per-state-dir lock, serves the control socket, and on
/// SIGTERM/SIGINT/SIGHUP takes every master down before it returns.
public final class SupervisorService: Sendable {
    public enum Mode: Sendable {
        case daemon
        case foreground(names: [String])
    }

    let paths: FwdPaths
    let mode: Mode
    let options: SupervisorOptions

    public init(paths: FwdPaths, mode: Mode, options: SupervisorOptions = .fromEnvironment()) {
        self.paths = paths
        self.mode = mode
        self.options = options
    }

    /// Runs until a signal or a `stop` request. `onReady` runs once the control socket serves.
    public func run(onReady: @Sendable () -> Void = {}) async throws {
        let lock = try Control.acquireSupervisorLock(paths)
        defer { close(lock) }
        let store = try Store(path: paths.database)
        let supervisor = Supervisor(paths: paths, store: store, options: options)
        await supervisor.reapStaleMasters()
        try? store.log("daemon", tunnel: nil, host: nil, message: "supervisor started (pid \(getpid()))")

        let (stopRequests, stopSink) = AsyncStream<String>.makeStream()
        let mode = self.mode
        let paths = self.paths
        let server = try ControlServer(paths: paths) { request in
            switch request.op {
            case .ping:
                return ControlReply(ok: true)
            case .reconcile:
                return await supervisor.serially {
                    do {
                        try await Self.reconcile(supervisor, store: store, paths: paths, mode: mode,
                                                 configPath: request.config ?? paths.config, retry: Set(request.names ?? []))
                        return ControlReply(ok: true)
                    } catch {
                        return ControlReply(ok: false, error: "\(error)")
                    }
                }
            case .check:
                await supervisor.check(request.names.map(Set.init))
                return ControlReply(ok: true)
            case .stop:
                stopSink.yield("a stop request")
                return ControlReply(ok: true)
            case .reconnect:
                return ControlReply(ok: true, lines: await supervisor.pathCheck(.requested, tunnels: request.names.map(Set.init)))
            }
        }
        let watch = Self.startNetworkWatch(supervisor, store: store)
        defer { watch.stop() }
        signal(SIGPIPE, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stopSink.yield("signal \(sig)") }
            source.resume()
            sources.append(source)
        }

        // The control socket already serves: this first reconcile queues with the requests it may race.
        let startError: (any Error)? = await supervisor.serially {
            do {
                try await Self.reconcile(supervisor, store: store, paths: paths, mode: mode, configPath: paths.config, retry: [],
                                         autostart: true)
                return nil
            } catch {
                return error
            }
        }
        if let error = startError {
            try? store.log("error", tunnel: nil, host: nil, message: "\(error)")
            if case .foreground = mode {
                server.stop()
                throw error
            }
        }
        onReady()
        var reason = "end of input"
        for await r in stopRequests {
            reason = r
            break
        }
        server.stop()
        await supervisor.shutdown()
        if case .foreground = mode {
            // Exactly what this run wanted up, not what the config (maybe edited meanwhile, maybe broken) says now.
            let owned = await supervisor.everWanted
            try? store.setDesired(.down, tunnels: owned.values.sorted { $0.name < $1.name }.map { t in
                (t.name, t.host, ForwardStatus.initial(for: t))
            })
        }
        try? store.log("daemon", tunnel: nil, host: nil, message: "supervisor stopped (\(reason)); all masters are down")
        sources.forEach { $0.cancel() }
    }

    /// Network changes and resumes from sleep reach every master at once (issue 13). Without a monitor (the
    /// socket refused) resumes are still watched, and ServerAlive still catches a dead path, only later.
    static func startNetworkWatch(_ supervisor: Supervisor, store: Store) -> NetworkWatch {
        var monitor: (any NetworkMonitor)?
        do {
            monitor = try NetworkWatch.systemMonitor()
        } catch {
            try? store.log("error", tunnel: nil, host: nil, message: "\(error); network changes are noticed only by ServerAlive")
        }
        return NetworkWatch(monitor: monitor) { trigger in await supervisor.notify(trigger) }
    }

    /// Loads the config and applies the wanted tunnels. A config that no longer parses changes nothing: the
    /// running tunnels stay as they are and the error is reported to the caller. `autostart` (a daemon's first
    /// reconcile, at login or under systemd/launchd) also wants the `autostart = true` tunnels up, as if `fwd up`
    /// had named them.
    static func reconcile(_ supervisor: Supervisor, store: Store, paths: FwdPaths, mode: Mode, configPath: String,
                          retry: Set<String>, autostart: Bool = false) async throws {
        let config = try ConfigLoader.load(path: configPath)
        let wanted: [Tunnel]
        switch mode {
        case .foreground(let names):
            wanted = try config.resolve(names)
            // `fwd run` wants its tunnels only while it runs; rows exist so `fwd status` can show them.
            try store.setDesired(.up, tunnels: wanted.map { t in
                (t.name, t.host, ForwardStatus.initial(for: t))
            })
        case .daemon:
            if autostart {
                // A store that refuses the write must not keep the tunnels `fwd up` already wants from coming up.
                do {
                    try markAutostart(store: store, config: config)
                } catch {
                    try? store.log("error", tunnel: nil, host: nil, message: "cannot mark the autostart tunnels wanted: \(error)")
                }
            }
            let desired = try store.desiredUp()
            var list: [Tunnel] = []
            for status in desired {
                if let t = config.tunnel(named: status.name) {
                    list.append(t)
                } else {
                    _ = try? store.transition(status.name, to: .failed, pid: nil,
                                          error: "tunnel \(status.name) is no longer in \(configPath)",
                                          message: "removed from the config; `fwd down \(status.name)` forgets it")
                }
            }
            wanted = list
        }
        await supervisor.apply(config, wanted: wanted, retry: retry)
    }

    /// Wants the `autostart = true` tunnels up, as `fwd up` naming them would.
    static func markAutostart(store: Store, config: FwdConfig) throws {
        let tunnels = config.tunnels.filter(\.autostart)
        guard !tunnels.isEmpty else { return }
        try store.setDesired(.up, tunnels: tunnels.map { t in (t.name, t.host, ForwardStatus.initial(for: t)) })
    }
}
