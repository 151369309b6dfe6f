import Foundation

/// What the supervisor does with each control request: one place that turns a `ControlRequest` into calls on
/// the `Supervisor` and replies on its connection. `SupervisorService.run` owns the lifecycle; this owns the
/// requests.
final class ControlRouter: Sendable {
    private let supervisor: Supervisor
    private let store: Store
    private let paths: FwdPaths
    private let mode: SupervisorService.Mode
    /// Armed after every request that may leave nothing wanted (an on-demand supervisor only).
    private let idle: IdleTimer?
    private let requestStop: @Sendable (String) -> Void
    /// Set (inside `serially`) once the supervisor stops: requests queued behind that are turned away.
    private let stopping = Locked(false)
    /// Opens once every master is down and the lock released: `stop` requests are answered then.
    private let down = Latch()
    /// `fwd daemon --stop` replies still being written: the process must not exit before they are out.
    private let stopReplies = Latch.Counter()

    init(supervisor: Supervisor, store: Store, paths: FwdPaths, mode: SupervisorService.Mode, idle: IdleTimer?,
         requestStop: @escaping @Sendable (String) -> Void) {
        self.supervisor = supervisor
        self.store = store
        self.paths = paths
        self.mode = mode
        self.idle = idle
        self.requestStop = requestStop
    }

    /// From now on, reconcile requests are answered `stopping`. Call inside `serially`.
    func refuseNewWork() { stopping.withLock { $0 = true } }

    /// The supervisor is down: answers the waiting `stop` requests and returns once those answers are written.
    func stopped() async {
        await down.open()
        await stopReplies.waitForZero()
    }

    func route(_ request: ControlRequest, _ connection: ControlConnection) async {
        let writer = supervisor.writer
        switch request.op {
        case .ping:
            connection.finish(.done)
        case .reconcile, .watch:
            // A client that can prompt is known before its tunnels start, so their first question finds it.
            let asker = request.op == .watch && request.prompt == true
                ? registerAsker(names: Set(request.names ?? []), connection: connection) : nil
            let failure = await reconcile(config: request.config ?? paths.config, retry: Set(request.names ?? []))
            await idle?.arm(when: supervisor.isIdle)
            guard request.op == .watch, failure == nil else {
                connection.finish(failure.map(ControlReply.failed) ?? .done)
                return
            }
            connection.send(.done)
            streamRows(request.names ?? [], to: connection)
            if let asker { supervisor.logins.activate(asker) }
        case .rows:
            // With `prompt`, the view can ask its user: login questions of its tunnels' hosts come to it too.
            let asker = request.prompt == true ? registerAsker(names: Set(request.names ?? []), connection: connection) : nil
            connection.send(.done)
            streamRows(request.names ?? [], to: connection)
            if let asker { supervisor.logins.activate(asker) }
        case .check:
            await supervisor.check(request.names.map(Set.init))
            connection.finish(.done)
        case .follow:
            connection.send(.done)
            let id = writer.subscribe(.events(tunnel: request.names?.first, after: request.after ?? 0)) { news in
                guard case .event(let e) = news else { return true }
                return connection.send(.event(e))
            }
            connection.onClose { writer.unsubscribe(id) }
        case .metrics:
            connection.finish(.lines([supervisor.metrics.exposition()]))
        case .reconnect:
            connection.finish(.lines(await supervisor.pathCheck(.requested, tunnels: request.names.map(Set.init))))
        case .reload:
            connection.finish((await reload(trigger: "fwd reload")).map(ControlReply.failed) ?? .done)
        case .stop:
            await stopReplies.enter()
            requestStop("a stop request")
            // Answered once every master is down and the lock is released: the caller may start anew at once.
            await down.wait()
            await connection.finishWritten(.done)
            await stopReplies.leave()
        }
    }

    /// Sends the rows of `names` on `connection`: the current ones, then each after a change, until it closes.
    private func streamRows(_ names: [String], to connection: ControlConnection) {
        let writer = supervisor.writer
        let id = writer.subscribe(.tunnels(Set(names))) { news in
            guard case .tunnel(let row) = news else { return true }
            return connection.send(.tunnel(row))
        }
        connection.onClose { writer.unsubscribe(id) }
    }

    /// Applies the config file as it now is, for a save the supervisor saw or for `fwd reload`, and logs what
    /// came of it. A file that does not parse changes nothing: the running tunnels stay as they are, and the
    /// error (file:line:col) is logged and returned.
    @discardableResult
    func reload(trigger: String) async -> ControlFailure? {
        let failure = await reconcile(config: paths.config, retry: [])
        await idle?.arm(when: supervisor.isIdle)
        if let failure {
            supervisor.writer.enqueue(.log(.error, tunnel: nil, host: nil, message: "\(trigger), but nothing was changed: \(failure)"))
        } else {
            supervisor.writer.enqueue(.log(.daemon, tunnel: nil, host: nil, message: "\(trigger): applied \(paths.config)"))
        }
        return failure
    }

    /// Reads the config and the wanted tunnels and hands them to the runners (in `serially`), then waits for
    /// the effects outside it. nil, or why it could not.
    private func reconcile(config: String, retry: Set<String>) async -> ControlFailure? {
        let (supervisor, store, paths, mode, stopping) = (self.supervisor, self.store, self.paths, self.mode, self.stopping)
        let outcome: Result<Supervisor.Applied, ControlFailure> = await supervisor.serially {
            if stopping.current { return .failure(.stopping) }
            do {
                return .success(try await SupervisorService.reconcile(supervisor, store: store, paths: paths, mode: mode,
                                                                      configPath: config, retry: retry))
            } catch let error as ConfigError {
                return .failure(.config(error.description))
            } catch {
                return .failure(.store("\(error)"))
            }
        }
        switch outcome {
        case .success(let applied):
            await supervisor.settle(applied)
            return nil
        case .failure(let failure):
            return failure
        }
    }

    /// A watch connection whose client can prompt: login questions of its tunnels' hosts go to it, its answer
    /// lines go back to the broker. It leaves the broker when the connection closes.
    private func registerAsker(names: Set<String>, connection: ControlConnection) -> Int {
        let logins = supervisor.logins
        let asker = logins.register(names: names,
                                    deliver: { connection.send(.prompt($0)) },
                                    withdraw: { _ = connection.send(.withdrawn($0)) })
        connection.onLine { line in
            guard let reply = try? JSONDecoder().decode(PromptAnswer.self, from: line) else { return }
            if reply.unable == true {
                logins.unable(from: asker, id: reply.id)
            } else {
                logins.answer(from: asker, id: reply.id, reply.cancel == true ? nil : reply.answer)
            }
        }
        connection.onClose { logins.unregister(asker) }
        return asker
    }
}
