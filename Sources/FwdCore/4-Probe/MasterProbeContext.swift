/// What probes share about one live ControlMaster: its control socket, and the transport round trip that its
/// dynamic forwards need (one per master and `transportRefresh`, however many -D forwards it carries).
/// Create one when a master becomes ready, pass it to every `HealthProbe` of that master, drop it with the
/// master: a new master starts with a fresh round trip.
package actor MasterProbeContext {
    package let controlSocket: String
    /// How long a transport round trip that was answered counts as proof. Each one costs a line in the
    /// server's log (sshd logs every failed channel connect at level ERROR: "connect_to 127.0.0.1 port 0:
    /// failed."), so it is not repeated every probe interval; between round trips the master's own
    /// ServerAlive keepalives (1 s × 2 by default) end a master whose transport hangs.
    package let transportRefresh: Duration
    private var transport: Task<TransportRoundTrip, Never>?
    private var lastAnswered: (at: ContinuousClock.Instant, roundTrip: Duration)?

    package init(controlSocket: String, transportRefresh: Duration = .seconds(30)) {
        self.controlSocket = controlSocket
        self.transportRefresh = transportRefresh
    }

    enum TransportRoundTrip: Sendable, Equatable {
        case answered(Duration)
        case failed(ProbeOutcome)
    }

    /// Proves the master's transport alive with one channel-open round trip. Callers that arrive while one
    /// is under way share its answer.
    func transportRoundTrip(until deadline: ContinuousClock.Instant) async -> TransportRoundTrip {
        if let last = lastAnswered, ContinuousClock.now - last.at < transportRefresh { return .answered(last.roundTrip) }
        if let transport { return await transport.value }
        let socket = controlSocket
        let task = Task { await Self.roundTrip(socket, until: deadline) }
        transport = task
        let result = await task.value
        transport = nil
        if case .answered(let rtt) = result { lastAnswered = (.now, rtt) } else { lastAnswered = nil }
        return result
    }

    private static func roundTrip(_ socket: String, until deadline: ContinuousClock.Instant) async -> TransportRoundTrip {
        switch await MuxClient.transportRoundTrip(socket, until: deadline) {
        case .success(let rtt): return .answered(rtt)
        case .failure(.noMaster(let why)): return .failed(.listenerDown("the master is gone: \(why)"))
        case .failure(let failure):
            return .failed(.noAnswer("the master's connection to the server did not answer a channel request (\(failure)): the transport looks stalled"))
        }
    }

    enum ChannelOpen: ~Copyable {
        /// The server connected to host:port; `roundTrip` is request to confirmation.
        case opened(ProbeSocket, roundTrip: Duration)
        case failed(ChannelFailure)
    }

    struct ChannelFailure: Sendable {
        var failure: MuxClient.Failure

        /// The outcome for a probe of a -R listener at `place` on the server.
        func describing(listener place: String) -> ProbeOutcome {
            switch failure {
            case .noMaster(let why): .listenerDown("the master is gone (\(why)), so the server's listener on \(place) is too")
            case .refused(let why): .listenerDown("nothing listens on the server at \(place): the server refused the channel (\(why))")
            case .timedOut(let why): .noAnswer("no answer through the master from the server's listener on \(place) (\(why))")
            case .protocolError(let why): .noAnswer("the master answered the channel request for \(place) oddly: \(why)")
            }
        }
    }

    /// A channel through the master to host:port as the server reaches it (MUX_C_NEW_STDIO_FWD).
    nonisolated func openChannel(host: String, port: Int, until deadline: ContinuousClock.Instant) async -> ChannelOpen {
        do {
            let client = try await MuxClient.connect(controlSocket, until: deadline)
            let sent = ContinuousClock.now
            let channel = try await client.openStdioForward(host: host, port: port, until: deadline)
            return .opened(channel, roundTrip: ContinuousClock.now - sent)
        } catch {
            return .failed(ChannelFailure(failure: error))
        }
    }
}
