import Foundation

/// A change the supervisor records.
enum StoreWrite: Sendable, Equatable {
    case state(tunnel: String, TunnelState, pid: Int?, error: String?, message: String)
    case restart(tunnel: String, reason: String)
    /// The tunnel's `attempts`-th failed attempt in a row; the next is due in `retryIn` s (nil: none is).
    case retrying(tunnel: String, attempts: Int, retryIn: Double?)
    case probe(tunnel: String, [ForwardStatus])
    case allocatedPort(tunnel: String, spec: String, port: Int)
    case saveMaster(MasterRecord)
    case removeMaster(host: String)
    case log(EventKind, tunnel: String?, host: String?, message: String)
    /// Samples added to a counter or histogram of the metrics.
    case tally(TallyKey, [Double])

    var tunnel: String? {
        switch self {
        case .state(let t, _, _, _, _), .restart(let t, _), .retrying(let t, _, _), .probe(let t, _), .allocatedPort(let t, _, _): t
        case .log(_, let t, _, _): t
        case .saveMaster, .removeMaster, .tally: nil
        }
    }
}

/// What a subscriber of the control socket is sent: a tunnel's row after a change, or a new event.
enum StoreNews: Sendable {
    case tunnel(TunnelStatus)
    case event(Event)
}

/// The supervisor's one way to write the database. Writes run in order on a thread of their own, so no host's
/// event loop waits on SQLite's lock, and every committed change is then pushed to the subscribers (`fwd up`
/// waiting for its tunnels, `fwd logs -f`): they learn of it as it happens, after it is in the record of truth.
final class StoreWriter: @unchecked Sendable {
    enum Interest: Sendable {
        /// These tunnels' rows: the current ones at once, then each after a change.
        case tunnels(Set<String>)
        /// Events with an id above `after`, of one tunnel or all: the recorded ones at once, then each new one.
        case events(tunnel: String?, after: Int64)
    }

    /// Called on the writer's thread; returns false once the subscriber is gone, which ends the subscription.
    typealias Sink = @Sendable (StoreNews) -> Bool

    private enum Job {
        case write(StoreWrite)
        case barrier(@Sendable () -> Void)
        case subscribe(Int, Interest, Sink)
        case unsubscribe(Int)
    }

    private struct Subscriber {
        var interest: Interest
        var sink: Sink
        var lastEvent: Int64
    }

    let store: Store
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var nextID = 0
    /// Only the writer's thread touches these.
    private var subscribers: [Int: Subscriber] = [:]

    /// Told each batch of writes once it is committed (on the writer's thread; must not block): the metrics
    /// follow the record of truth, so a counter they show is never ahead of what a restart reads back.
    private let committed: (@Sendable ([StoreWrite]) -> Void)?

    init(store: Store, committed: (@Sendable ([StoreWrite]) -> Void)? = nil) {
        self.store = store
        self.committed = committed
        // The thread keeps the writer: it lives as long as the process. (`unowned` crashed when a supervisor
        // that failed at start released its writer before this thread had begun.)
        let thread = Thread { [self] in self.loop() }
        thread.name = "fwd store writer"
        thread.start()
    }

    func enqueue(_ write: StoreWrite) { post(.write(write)) }

    /// Queues `writes` at once: the writer takes them together and commits them in one transaction.
    func enqueue(contentsOf writes: [StoreWrite]) {
        guard !writes.isEmpty else { return }
        condition.lock()
        jobs += writes.map(Job.write)
        condition.signal()
        condition.unlock()
    }

    /// Returns once every write enqueued before it is committed.
    func flush() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in post(.barrier { done.resume() }) }
    }

    /// Starts sending news of `interest` to `sink`; returns the id to unsubscribe with.
    @discardableResult
    func subscribe(_ interest: Interest, sink: @escaping Sink) -> Int {
        condition.lock()
        nextID += 1
        let id = nextID
        jobs.append(.subscribe(id, interest, sink))
        condition.signal()
        condition.unlock()
        return id
    }

    func unsubscribe(_ id: Int) { post(.unsubscribe(id)) }

    private func post(_ job: Job) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs = []
            condition.unlock()
            var touched: Set<String> = []
            var logged = false
            var writes: [StoreWrite] = []
            // What queued up together (a host's whole probe round) commits in one transaction, before anything
            // that waits for it (a barrier, a new subscriber's first read) and before the news goes out.
            func commit() {
                guard !writes.isEmpty else { return }
                var done = writes
                for (write, error) in store.apply(writes) {
                    // The daemon's stderr is its log file (daemon.log); `fwd doctor` and the user read it there.
                    FileHandle.standardError.write(Data("fwd: cannot record \(write): \(error)\n".utf8))
                    if let i = done.firstIndex(of: write) { done.remove(at: i) }
                }
                committed?(done)
                for write in writes { if let t = write.tunnel { touched.insert(t) } }
                logged = true
                writes = []
            }
            for job in batch {
                switch job {
                case .write(let write):
                    writes.append(write)
                case .barrier(let done):
                    commit()
                    // Also the moment to pass on events that CLI processes recorded (a reconcile follows them).
                    publish(touched, events: true)
                    touched = []
                    logged = false
                    done()
                case .subscribe(let id, let interest, let sink):
                    commit()
                    publish(touched, events: logged)
                    touched = []
                    logged = false
                    start(id, interest, sink)
                case .unsubscribe(let id):
                    subscribers[id] = nil
                }
            }
            commit()
            publish(touched, events: logged)
        }
    }

    private func start(_ id: Int, _ interest: Interest, _ sink: @escaping Sink) {
        var subscriber = Subscriber(interest: interest, sink: sink, lastEvent: 0)
        switch interest {
        case .tunnels(let names):
            guard let rows = read({ try store.tunnels(named: Array(names)) }) else { return }
            for name in names.sorted() {
                if let row = rows[name], !sink(.tunnel(row)) { return }
            }
        case .events(_, let after):
            subscriber.lastEvent = after
            guard send(&subscriber) else { return }
        }
        subscribers[id] = subscriber
    }

    private func publish(_ touched: Set<String>, events: Bool) {
        guard !subscribers.isEmpty, !touched.isEmpty || events else { return }
        let wanted = subscribers.values.reduce(into: Set<String>()) { names, s in
            if case .tunnels(let n) = s.interest { names.formUnion(n.intersection(touched)) }
        }
        let rows = wanted.isEmpty ? [:] : (read { try store.tunnels(named: Array(wanted)) } ?? [:])
        for (id, var subscriber) in subscribers {
            var alive = true
            switch subscriber.interest {
            case .tunnels(let names):
                for name in names.intersection(touched).sorted() {
                    if let row = rows[name], !subscriber.sink(.tunnel(row)) { alive = false }
                }
            case .events:
                alive = events ? send(&subscriber) : true
            }
            subscribers[id] = alive ? subscriber : nil
        }
    }

    /// Sends the subscriber's events above its last one. Reading them from the table (not from the writes)
    /// also brings what CLI processes recorded (a `desired` change) in between.
    private func send(_ subscriber: inout Subscriber) -> Bool {
        guard case .events(let tunnel, _) = subscriber.interest else { return true }
        while true {
            guard let batch = read({ try store.events(tunnel: tunnel, after: subscriber.lastEvent, limit: 500) }) else { return true }
            for event in batch {
                guard subscriber.sink(.event(event)) else { return false }
                subscriber.lastEvent = event.id
            }
            if batch.count < 500 { return true }
        }
    }

    private func read<T>(_ body: () throws -> T) -> T? {
        do {
            return try body()
        } catch {
            FileHandle.standardError.write(Data("fwd: cannot read the state database: \(error)\n".utf8))
            return nil
        }
    }
}
