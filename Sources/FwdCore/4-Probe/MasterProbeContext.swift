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
    /// When a master's first round trip, while it has no answer, sends the server a message to acknowledge
    /// what the server sent meanwhile (`nudging`), counted from the request.
    package let nudges: [Duration]
    private var transport: Task<TransportRoundTrip, Never>?
    private var lastAnswered: (at: ContinuousClock.Instant, roundTrip: Duration)?
    private var isFirstRoundTrip = true

    package init(controlSocket: String, transportRefresh: Duration = .seconds(30),
                 nudges: [Duration] = [.milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(20)]) {
        self.controlSocket = controlSocket
        self.transportRefresh = transportRefresh
        self.nudges = nudges
    }

    enum TransportRoundTrip: Sendable, Equatable {
        case answered(Duration)
        case failed(ProbeOutcome)
    }

    /// Proves the master's transport alive with one channel-open round trip. Callers that arrive while one
    /// is under way share its answer. The first one of a master is `nudging` the server.
    func transportRoundTrip(until deadline: ContinuousClock.Instant) async -> TransportRoundTrip {
        if let last = lastAnswered, ContinuousClock.now - last.at < transportRefresh { return .answered(last.roundTrip) }
        if let transport { return await transport.value }
        let socket = controlSocket
        let nudges = isFirstRoundTrip ? nudges : []
        isFirstRoundTrip = false
        let task = Task { await Self.nudging(socket, at: nudges) { await Self.roundTrip(socket, until: deadline) } }
        transport = task
        let result = await task.value
        transport = nil
        if case .answered(let rtt) = result { lastAnswered = (.now, rtt) } else { lastAnswered = nil }
        return result
    }

    /// A new master's first request to the server can wait 40 ms for no reason of its own. As its session
    /// starts, sshd sends a host-key notice (`hostkeys-00@openssh.com`) that the client does not answer. A
    /// request that leaves the client just before that notice arrives cannot acknowledge it, and on a
    /// connection without a session sshd keeps Nagle on: it holds its answer until the client's delayed ACK.
    /// fwd's first round trip leaves as soon as the master is ready, which is that moment. So while the
    /// request has no answer, at each of `nudges` the server is sent an SSH2_MSG_IGNORE through a proxy
    /// connection to the master (`MuxClient.ignore`): the packet carries the acknowledgement, and the held
    /// answer goes out at once. The server answers an ignore message with nothing, so it leaves sshd with
    /// nothing to hold when the user's first connection comes (a second channel request would: its own
    /// answer). The result and its round trip are the request's own.
    static func nudging(_ socket: String, at nudges: [Duration], _ request: @Sendable () async -> TransportRoundTrip) async -> TransportRoundTrip {
        guard !nudges.isEmpty else { return await request() }
        let nudger = Task {
            let start = ContinuousClock.now
            var proxy: MuxClient?
            for at in nudges {
                guard (try? await Task.sleep(until: start + at)) != nil else { return }  // answered
                if proxy == nil {
                    proxy = try? await MuxClient.connect(socket, until: .now + .seconds(1))
                    guard (try? await proxy?.startProxy(until: .now + .seconds(1))) != nil else { return }
                }
                guard (try? await proxy?.ignore(until: .now + .seconds(1))) != nil else { return }
            }
        }
        defer { nudger.cancel() }
        return await request()
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
