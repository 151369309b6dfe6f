/// What `HostMachine` knows of its live master's network path between a trigger (network change, resume,
/// `fwd reconnect`) and its outcome: at most one transport round trip out, one more reason waiting for it, the
/// restart fwd ordered because the path is gone, and the requests waiting for a line. All of it ends with the
/// master.
struct PathCheck {
    /// A transport round trip through the master is out.
    private(set) var checking = false
    /// A reason to check that came while a check was out: checked once that one is back (a later one replaces it).
    private(set) var queued: String?
    /// Set when fwd ended the master because its path is gone: the restart's reason (its exit reconnects at once).
    private(set) var restartReason: String?
    /// `pathCheck` requests waiting for the outcome of a check or restart.
    private(set) var waiting: [Int] = []

    var isRestarting: Bool { restartReason != nil }

    /// The request `token` (none: nobody asked for a line) waits for what comes of the check or restart.
    mutating func wait(_ token: Int?) {
        if let token { waiting.append(token) }
    }

    /// A reason to ask the server whether the path still carries: returns the reason to check now, or nil when
    /// a check is out already (this reason is checked once that one is back).
    mutating func check(_ reason: String) -> String? {
        guard !checking else {
            queued = reason
            return nil
        }
        checking = true
        return reason
    }

    /// The round trip came back (answered or not).
    mutating func returned() {
        checking = false
    }

    /// The server answered through the master: returns the requests waiting, which now get their line, and the
    /// reason queued meanwhile, which is checked now.
    mutating func serverAnswered() -> (waiting: [Int], next: String?) {
        let waiting = waiting
        self.waiting = []
        guard let next = queued else { return (waiting, nil) }
        queued = nil
        checking = true
        return (waiting, next)
    }

    /// fwd ends the master because its path is gone.
    mutating func restart(_ reason: String) {
        restartReason = reason
    }

    /// The master is gone (exited or stopped): returns why fwd ended it, if it did, and the requests waiting.
    /// Nothing is checked or waited for after it.
    mutating func masterGone() -> (restartReason: String?, waiting: [Int]) {
        defer { self = PathCheck() }
        return (restartReason, waiting)
    }
}
