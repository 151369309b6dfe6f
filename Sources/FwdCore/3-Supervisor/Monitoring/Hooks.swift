import Foundation

/// Runs the `on_change` hooks ([hooks] in fwd.toml, or the tunnel's own) on every state change: started at once,
/// off the supervisor's loops, each with its timeout, at most `concurrency` at a time with a bounded queue behind,
/// so a slow, failing or hanging hook delays neither supervision nor another tunnel's hook (unless that many
/// hang at once). Each run's exit status and stderr go to the events log (`fwd logs`).
package final class Hooks: Sendable {
    /// Hooks running at once; a change beyond that waits for a free slot.
    static let concurrency = 8
    /// Changes waiting for a slot; beyond that a change's hook is dropped, and the drop logged.
    static let queueLimit = 64

    private struct Job: Sendable {
        var command: String
        var environment: [String: String]
        var change: StateChange
        var timeout: Double
    }

    private struct State {
        var settings = MonitoringSettings()
        var forwards: [String: [String]] = [:]
        var running = 0
        var queue: [Job] = []
        /// The runs under way, to end them when the supervisor stops.
        var tasks: [Int: Task<Void, Never>] = [:]
        var nextTask = 0
        var stopping = false
    }

    private let writer: StoreWriter
    private let state = Locked(State())

    init(writer: StoreWriter) { self.writer = writer }

    /// The hooks and the tunnels' forwards from the config being applied.
    func configure(_ config: FwdConfig) {
        state.withLock { s in
            s.settings = config.monitoring
            for t in config.tunnels { s.forwards[t.name] = t.forwards.map(\.sshArgument) }
        }
    }

    /// Called on the store writer's thread with committed changes: queues their hooks and returns.
    func changed(_ changes: [StateChange]) {
        var dropped: [StateChange] = []
        let start: [Job] = state.withLock { s in
            for change in changes where !s.stopping {
                guard let command = s.settings.hook(for: change.tunnel) else { continue }
                guard s.queue.count < Self.queueLimit else {
                    dropped.append(change)
                    continue
                }
                s.queue.append(Job(command: command, environment: Self.environment(change, forwards: s.forwards[change.tunnel] ?? []),
                                   change: change, timeout: s.settings.hookTimeout))
            }
            return Self.take(&s)
        }
        for change in dropped {
            writer.enqueue(.log(.hook, tunnel: change.tunnel, host: change.host,
                                message: "hook not run for \(change.from.rawValue) → \(change.to.rawValue): \(Self.queueLimit) hooks already wait"))
        }
        for job in start { Self.run(job, writer: writer, state: state) }
    }

    /// What a hook's environment adds to fwd's own: the values, never part of the command line.
    static func environment(_ change: StateChange, forwards: [String]) -> [String: String] {
        ["FWD_TUNNEL": change.tunnel, "FWD_HOST": change.host, "FWD_STATE": change.to.rawValue,
         "FWD_PREVIOUS_STATE": change.from.rawValue, "FWD_REASON": change.reason, "FWD_FORWARDS": forwards.joined(separator: " ")]
    }

    /// Jobs that may start now (slots free). Call with the lock held.
    private static func take(_ s: inout State) -> [Job] {
        var jobs: [Job] = []
        while s.running < concurrency, !s.queue.isEmpty {
            s.running += 1
            jobs.append(s.queue.removeFirst())
        }
        return jobs
    }

    /// When the supervisor stops: hooks already started (those of the last changes, a tunnel going down among
    /// them) get up to `grace` to finish; then they and everything they started are ended, so no hook outlives
    /// its supervisor. Queued ones are dropped.
    func finish(grace: Duration) async {
        state.withLock { s in
            s.stopping = true
            s.queue = []
        }
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline, !state.withLock({ $0.tasks.isEmpty }) {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let left = state.withLock { Array($0.tasks.values) }
        for task in left { task.cancel() }
        for task in left { await task.value }
    }

    /// Runs `job`, logs how it ended, then starts what waited for its slot.
    private static func run(_ job: Job, writer: StoreWriter, state: Locked<State>) {
        state.withLock { s in
            s.nextTask += 1
            let id = s.nextTask
            // Registered under the lock before it can end, so its own removal always finds it.
            s.tasks[id] = Task.detached { await execute(job, id: id, writer: writer, state: state) }
        }
    }

    private static func execute(_ job: Job, id: Int, writer: StoreWriter, state: Locked<State>) async {
        let outcome = await ShellCommand.run(job.command, environment: job.environment, timeout: .seconds(job.timeout))
        let c = job.change
        let what = "hook for \(c.from.rawValue) → \(c.to.rawValue)"
        let stderr = outcome.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        let said = stderr.isEmpty ? "" : "; stderr: \(Validation.printable(stderr))"
        let message: String
        if Task.isCancelled {
            message = "\(what) was ended: the supervisor stopped\(said)"
        } else if outcome.timedOut {
            message = "\(what) did not finish within \(Int(job.timeout)) s and was killed\(said)"
        } else if let status = outcome.status {
            message = "\(what) exited with status \(status) after \(String(format: "%.1f", outcome.seconds)) s\(said)"
        } else {
            message = "\(what) could not run: \(stderr)"
        }
        writer.enqueue(.log(.hook, tunnel: c.tunnel, host: c.host, message: message))
        let next = state.withLock { s in
            s.running -= 1
            s.tasks[id] = nil
            return Self.take(&s)
        }
        for job in next { run(job, writer: writer, state: state) }
    }
}
