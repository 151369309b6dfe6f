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
        try await supervisor.reapStaleMasters()
        writer.enqueue(.log(.daemon, tunnel: nil, host: nil, message: "supervisor started (pid \(getpid()))"))

        let (stops, stopSink) = AsyncStream<String>.makeStream()
        let stopped = Latch()
        // `fwd daemon --stop` requests still being answered: the process must not exit before their replies are out.
        let stopReplies = DispatchGroup()
        let mode = self.mode
        let paths = self.paths
        let idleReason = "nothing wanted for \(Int(options.idleExit)) s"
        let idle = IdleTimer(seconds: options.idleExit) { stopSink.yield(idleReason) }
        // Set (inside `serially`) once the supervisor stops: requests queued behind that are turned away.
        let stopping = StopFlag()
        let server = try ControlServer(paths: paths) { request, connection in
            switch request.op {
            case .ping:
                connection.finish(ControlReply(ok: true))
            case .reconcile, .watch:
                // A client that can prompt is known before its tunnels start, so their first question finds it.
                let asker = request.op == .watch && request.prompt == true
                    ? Self.registerAsker(supervisor.logins, names: Set(request.names ?? []), connection: connection) : nil
                let outcome: Result<Supervisor.Applied, ControlFailure> = await supervisor.serially {
                    if stopping.isSet { return .failure(.stopping) }
                    do {
                        return .success(try await Self.reconcile(supervisor, store: store, paths: paths, mode: mode,
                                                                 configPath: request.config ?? paths.config, retry: Set(request.names ?? [])))
                    } catch let error as ConfigError {
                        return .failure(.config(error.description))
                    } catch {
                        return .failure(.store("\(error)"))
                    }
                }
                var failure: ControlFailure?
                switch outcome {
                case .success(let applied): await supervisor.settle(applied)
                case .failure(let f): failure = f
                }
                if self.onDemand { await idle.arm(when: supervisor.isIdle) }
                guard request.op == .watch, failure == nil else {
                    connection.finish(ControlReply(ok: failure == nil, error: failure))
                    return
                }
                connection.send(ControlReply(ok: true))
                let id = writer.subscribe(.tunnels(Set(request.names ?? []))) { news in
                    guard case .tunnel(let row) = news else { return true }
                    return connection.send(ControlReply(ok: true, tunnel: row))
                }
                connection.onClose { writer.unsubscribe(id) }
                if let asker { supervisor.logins.activate(asker) }
            case .check:
                await supervisor.check(request.names.map(Set.init))
                connection.finish(ControlReply(ok: true))
            case .follow:
                connection.send(ControlReply(ok: true))
                let id = writer.subscribe(.events(tunnel: request.names?.first, after: request.after ?? 0)) { news in
                    guard case .event(let e) = news else { return true }
                    return connection.send(ControlReply(ok: true, event: e))
                }
                connection.onClose { writer.unsubscribe(id) }
            case .reconnect:
                connection.finish(ControlReply(ok: true, lines: await supervisor.pathCheck(.requested, tunnels: request.names.map(Set.init))))
            case .stop:
                stopReplies.enter()
                defer { stopReplies.leave() }
                stopSink.yield("a stop request")
                // Answered once every master is down and the lock is released: the caller may start anew at once.
                await stopped.wait()
                await connection.finishWritten(ControlReply(ok: true))
            }
        }
        let watch = Self.startNetworkWatch(supervisor)
        defer { watch.stop() }
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
                stopping.set()
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
        await stopped.open()
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in stopReplies.notify(queue: .global()) { done.resume() } }
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

    /// A watch connection whose client can prompt: login questions of its tunnels' hosts go to it, its answer
    /// lines go back to the broker. It leaves the broker when the connection closes.
    static func registerAsker(_ logins: LoginBroker, names: Set<String>, connection: ControlConnection) -> Int {
        let asker = logins.register(names: names,
                                    deliver: { connection.send(ControlReply(ok: true, prompt: $0)) },
                                    withdraw: { _ = connection.send(ControlReply(ok: true, withdrawn: $0)) })
        connection.onLine { line in
            guard let reply = try? JSONDecoder().decode(PromptAnswer.self, from: line) else { return }
            // Off the connection's queue: moving a question may write to another connection.
            DispatchQueue.global().async {
                if reply.unable == true {
                    logins.unable(from: asker, id: reply.id)
                } else {
                    logins.answer(from: asker, id: reply.id, reply.cancel == true ? nil : reply.answer)
                }
            }
        }
        connection.onClose { logins.unregister(asker) }
        return asker
    }

    /// `fwd run` asks its own terminal.
    static func registerTerminal(_ logins: LoginBroker, names: Set<String>, prompter: TerminalPrompter,
                                 onCancel: @escaping @Sendable () -> Void) {
        let box = AskerBox()
        let desk = PromptDesk(prompter: prompter) { question, outcome in
            switch outcome {
            case .answer(let answer): logins.answer(from: box.id, id: question.id, answer)
            case .cancelled:
                logins.answer(from: box.id, id: question.id, nil)
                onCancel()
            case .withdrawn: break
            case .noTerminal: logins.unable(from: box.id, id: question.id)
            }
        }
        box.id = logins.register(names: names, deliver: { desk.show($0); return true }, withdraw: { desk.withdraw($0) })
        logins.activate(box.id)
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
            let desired = try store.desiredUp()
            var list: [Tunnel] = []
            for status in desired {
                if let t = config.tunnel(named: status.name) {
                    list.append(t)
                } else {
                    supervisor.writer.enqueue(.state(tunnel: status.name, .failed, pid: nil,
                                                     error: "tunnel \(status.name) is no longer in \(configPath)",
                                                     message: "removed from the config; `fwd down \(status.name)` forgets it"))
                }
            }
            wanted = list
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

/// The id of an asker whose callbacks exist before it is registered.
final class AskerBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    var id: Int {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

/// A one-way switch, readable from any thread.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
