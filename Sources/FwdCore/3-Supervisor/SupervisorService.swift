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
package final class SupervisorService: Sendable {
    package enum Mode: Sendable {
        case daemon
        case foreground(names: [String])
    }

    let paths: FwdPaths
    let mode: Mode
    let options: SupervisorOptions
    /// Started by `fwd up` rather than by the user or a service manager: it exits once nothing is wanted.
    let onDemand: Bool
    /// A pipe to the `fwd up` that started this supervisor, told "ready" once the control socket serves.
    let readyFD: Int32?
    /// `fwd run` on a terminal: its own tunnels' login questions are asked here; Ctrl-C at one stops the run.
    let prompter: TerminalPrompter?

    package init(paths: FwdPaths, mode: Mode, options: SupervisorOptions = .fromEnvironment(), onDemand: Bool = false,
                readyFD: Int32? = nil, prompter: TerminalPrompter? = nil) {
        self.paths = paths
        self.mode = mode
        self.options = options
        self.onDemand = onDemand
        self.readyFD = readyFD
        self.prompter = prompter
    }

    /// Runs until a signal or a `stop` request (or, `onDemand`, until nothing has been wanted for `idleExit`
    /// seconds). `onReady` runs once the control socket serves; `onEvent` gets every event as it is recorded.
    package func run(onReady: @Sendable () -> Void = {}, onEvent: (@Sendable (Event) -> Void)? = nil) async throws {
        let lock = try Control.acquireSupervisorLock(paths)
        var lockHeld = true
        defer { if lockHeld { close(lock) } }
        let store = try Store(path: paths.database)
        let supervisor = Supervisor(paths: paths, store: store, options: options)
        let writer = supervisor.writer
        if let onEvent {
            let after = try store.events(after: 0, limit: 1_000_000).last?.id ?? 0
            writer.subscribe(.events(tunnel: nil, after: after)) { news in
                if case .event(let e) = news { onEvent(e) }
                return true
            }
        }
        // Before any write: the metrics carry on from the recorded counters (they survive restarts). A row this fwd
        // cannot read costs the metrics their history, not the supervisor its start.
        do {
            try supervisor.metrics.load(store)
        } catch {
            writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "the metrics start from zero: \(error)"))
        }
        try await supervisor.reapStaleMasters()
        writer.enqueue(.log(.daemon, tunnel: nil, host: nil, message: "supervisor started (pid \(getpid()))"))

        let (stops, stopSink) = AsyncStream<String>.makeStream()
        let idleReason = "nothing wanted for \(Int(options.idleExit)) s"
        let idle = IdleTimer(seconds: options.idleExit) { stopSink.yield(idleReason) }
        let router = ControlRouter(supervisor: supervisor, store: store, paths: paths, mode: mode, idle: onDemand ? idle : nil) {
            stopSink.yield($0)
        }
        let server = try ControlServer(paths: paths) { request, connection in await router.route(request, connection) }
        let watch = Self.startNetworkWatch(supervisor)
        defer { watch.stop() }
        // The file is the truth: a save is applied by itself, as `fwd reload` would (docs/usage.md, "Reload").
        let configPath = paths.config
        let follower = Task { await Self.follow(configPath) { await router.reload(trigger: "the config was saved") } }
        defer { follower.cancel() }
        if let prompter, case .foreground(let names) = mode {
            Self.registerTerminal(supervisor.logins, names: Set(names), prompter: prompter) { stopSink.yield("the login was cancelled at the prompt") }
        }
        signal(SIGPIPE, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT, SIGHUP] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stopSink.yield("signal \(sig)") }
            source.resume()
            sources.append(source)
        }
        if let readyFD {
            // `fwd up` that started this supervisor waits on this pipe: it may send requests from now on.
            _ = "ready\n".withCString { write(readyFD, $0, strlen($0)) }
            close(readyFD)
        }

        // The control socket already serves: this first reconcile queues with the requests it may race.
        let (mode, paths) = (self.mode, self.paths)
        let start: Result<Supervisor.Applied, any Error> = await supervisor.serially {
            do {
                return .success(try await Self.reconcile(supervisor, store: store, paths: paths, mode: mode, configPath: paths.config,
                                                         retry: [], autostart: true))
            } catch {
                return .failure(error)
            }
        }
        var startError: (any Error)?
        switch start {
        case .success(let applied): await supervisor.settle(applied)
        case .failure(let error): startError = error
        }
        if let error = startError {
            writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "\(error)"))
            if case .foreground = mode {
                server.stop()
                await writer.flush()
                throw error
            }
        }
        if onDemand { await idle.arm(when: supervisor.isIdle) }
        onReady()
        var reason = "end of input"
        for await r in stops {
            // An idle timer that fired while a request was on its way is overruled by that request.
            let stop = await supervisor.serially {
                if r == idleReason, await !supervisor.isIdle { return false }
                router.refuseNewWork()
                server.stop()
                return true
            }
            if stop {
                reason = r
                break
            }
        }
        await idle.disarm()
        await supervisor.shutdown()
        if case .foreground = mode {
            // Exactly what this run wanted up, not what the config (maybe edited meanwhile, maybe broken) says now.
            let owned = await supervisor.everWanted
            do {
                try store.setDesired(.down, tunnels: owned.values.sorted { $0.name < $1.name })
            } catch {
                writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "cannot mark this run's tunnels down: \(error)"))
            }
        }
        writer.enqueue(.log(.daemon, tunnel: nil, host: nil, message: "supervisor stopped (\(reason)); all masters are down"))
        await writer.flush()
        sources.forEach { $0.cancel() }
        close(lock)
        lockHeld = false
        await router.stopped()
    }

    /// Calls `changed` after each change of the file at `path`: a write, a rename over it (how editors save),
    /// a removal. The directory is watched (inotify), so a replaced file stays watched; a burst of events
    /// (write, rename, chmod) is one change, taken 100 ms after it starts. Without inotify, or while the
    /// directory does not exist, the file's identity is compared every second.
    static func follow(_ path: String, changed: @Sendable () async -> Void) async {
        let directory = (path as NSString).deletingLastPathComponent, name = (path as NSString).lastPathComponent
        while !Task.isCancelled {
            let watched = await DirectoryWatch.watch(directory, for: .anyChange) { names in
                guard names.contains(name) else { return true }
                try? await Task.sleep(for: .milliseconds(100))
                if !Task.isCancelled { await changed() }
                return true
            }
            if watched { return }
            // No watch (no inotify, or the directory does not exist yet): compare, then try the watch again.
            let seen = FileSystem.identity(path)
            try? await Task.sleep(for: .seconds(1))
            if !Task.isCancelled, FileSystem.identity(path) != seen { await changed() }
        }
    }

    /// Network changes and resumes from sleep reach every master at once (issue 13). Without a monitor (the
    /// socket refused) resumes are still watched, and ServerAlive still catches a dead path, only later.
    static func startNetworkWatch(_ supervisor: Supervisor) -> NetworkWatch {
        var monitor: (any NetworkMonitor)?
        do {
            monitor = try NetworkWatch.systemMonitor()
        } catch {
            supervisor.writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "\(error); network changes are noticed only by ServerAlive"))
        }
        return NetworkWatch(monitor: monitor) { trigger in await supervisor.notify(trigger) }
    }

    /// `fwd run` asks its own terminal.
    static func registerTerminal(_ logins: LoginBroker, names: Set<String>, prompter: TerminalPrompter,
                                 onCancel: @escaping @Sendable () -> Void) {
        // The desk's callbacks exist before the asker is registered: they read its id when they run.
        let asker = Locked(0)
        let desk = PromptDesk(prompter: prompter) { question, outcome in
            let id = asker.current
            switch outcome {
            case .answer(let answer): logins.answer(from: id, id: question.id, answer)
            case .cancelled:
                logins.answer(from: id, id: question.id, nil)
                onCancel()
            case .withdrawn: break
            case .noTerminal: logins.unable(from: id, id: question.id)
            }
        }
        let id = logins.register(names: names, deliver: { desk.show($0); return true }, withdraw: { desk.withdraw($0) })
        asker.withLock { $0 = id }
        logins.activate(id)
    }

    /// Loads the config and applies the wanted tunnels. A config that no longer parses changes nothing: the
    /// running tunnels stay as they are and the error is reported to the caller. `autostart` (a daemon's first
    /// reconcile, at login or under systemd/launchd) also wants the `autostart = true` tunnels up, as if `fwd up`
    /// had named them.
    static func reconcile(_ supervisor: Supervisor, store: Store, paths: FwdPaths, mode: Mode, configPath: String,
                          retry: Set<String>, autostart: Bool = false) async throws -> Supervisor.Applied {
        let config = try ConfigLoader.load(path: configPath)
        let wanted: [Tunnel]
        switch mode {
        case .foreground(let names):
            wanted = try config.resolve(names)
            // `fwd run` wants its tunnels only while it runs; rows exist so `fwd status` can show them.
            try store.setDesired(.up, tunnels: wanted)
        case .daemon:
            if autostart {
                // A store that refuses the write must not keep the tunnels `fwd up` already wants from coming up.
                do {
                    try markAutostart(store: store, config: config)
                } catch {
                    supervisor.writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "cannot mark the autostart tunnels wanted: \(error)"))
                }
            }
            // A tunnel the file no longer has goes down (it is not handed to its runner) and its row, once down,
            // is forgotten on the next reconcile: the file is the truth for what exists.
            let desired = try store.desiredUp()
            let removed = desired.filter { config.tunnel(named: $0.name) == nil }
            if !removed.isEmpty {
                try store.setDesired(.down, recorded: removed)
                for status in removed {
                    supervisor.writer.enqueue(.log(.daemon, tunnel: status.name, host: status.host,
                                                   message: "removed from \(configPath): taken down"))
                }
            }
            try store.forgetDown(keeping: Set(config.tunnels.map(\.name)))
            supervisor.metrics.forgetDown(keeping: Set(config.tunnels.map(\.name)))
            wanted = desired.compactMap { config.tunnel(named: $0.name) }
        }
        return await supervisor.apply(config, wanted: wanted, retry: retry)
    }

    /// Wants the `autostart = true` tunnels up, as `fwd up` naming them would.
    static func markAutostart(store: Store, config: FwdConfig) throws {
        let tunnels = config.tunnels.filter(\.autostart)
        guard !tunnels.isEmpty else { return }
        try store.setDesired(.up, tunnels: tunnels)
    }
}

/// Opens once; every waiter, earlier or later, then goes on.
actor Latch {
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        waiters.forEach { $0.resume() }
        waiters = []
    }

    /// Work in flight, waited for until none is left.
    actor Counter {
        private var count = 0
        private var waiters: [CheckedContinuation<Void, Never>] = []

        func enter() { count += 1 }

        func leave() {
            count -= 1
            guard count == 0 else { return }
            waiters.forEach { $0.resume() }
            waiters = []
        }

        func waitForZero() async {
            if count == 0 { return }
            await withCheckedContinuation { waiters.append($0) }
        }
    }
}

/// Fires `action` once `seconds` have passed since it was armed, unless disarmed or re-armed before.
actor IdleTimer {
    private let seconds: Double
    private let action: @Sendable () -> Void
    private var pending: Task<Void, Never>?

    init(seconds: Double, action: @escaping @Sendable () -> Void) {
        self.seconds = seconds
        self.action = action
    }

    /// Arms the timer when `idle` is true, disarms it otherwise.
    func arm(when idle: Bool) {
        if !idle {
            disarm()
            return
        }
        guard pending == nil else { return }
        let (seconds, action) = (self.seconds, self.action)
        pending = Task {
            try? await Task.sleep(for: .seconds(seconds))
            if !Task.isCancelled { action() }
        }
    }

    func disarm() {
        pending?.cancel()
        pending = nil
    }
}
