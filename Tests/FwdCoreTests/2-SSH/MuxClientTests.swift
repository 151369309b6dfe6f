import Foundation
import Testing
@testable import FwdCore

#if canImport(Glibc)
import Glibc
#endif

/// fwd adds and cancels forwards by speaking the master's mux protocol itself. These tests hold it to the
/// real thing: a fake master on a UNIX socket records what `ssh -O forward|cancel` (the system OpenSSH
/// client) sends for a spec, and fwd's request for the same spec must be the same bytes.
@Suite(.serialized) struct MuxClientTests {
    static let specs: [(ForwardKind, String)] = [
        (.local, "8080:intranet:80"),
        (.local, "127.0.0.2:8080:10.1.2.3:80"),
        (.local, "[::1]:8080:[fd00::5]:443"),
        (.local, ":8080:db:5432"),
        (.local, "*:8080:db:5432"),
        (.local, "/tmp/fwd-wire.sock:db:5432"),
        (.local, "9000:/run/app.sock"),
        (.dynamic, "1080"),
        (.dynamic, "0.0.0.0:1080"),
        (.remote, "8022:localhost:22"),
        (.remote, "0:127.0.0.1:3000"),
        (.remote, "9050"),
        (.remote, "/tmp/fwd-remote.sock:localhost:80"),
    ]

    @Test(arguments: specs, [false, true])
    func fwdSendsWhatSSHSends(written: (kind: ForwardKind, text: String), cancel: Bool) async throws {
        let (kind, text) = written
        let spec = try ForwardSpec.parse(text, kind: kind)
        let master = try FakeMaster()
        defer { master.close() }
        let ssh = SSHCommand.mux(socket: master.path, cancel ? .cancel(spec) : .forward(spec))
        let result = try await CommandRunner.run(ssh, timeout: .seconds(10))
        let request = try #require(master.requests.first, "ssh sent no request: \(result.stderr)")
        #expect(result.status == 0, "\(result.stderr)")
        // The request id is the fourth to eighth byte of the body, after the type.
        let id = request.dropFirst(8).prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        #expect(MuxClient.forwardRequest(spec, id: id, cancel: cancel) == request, "\(kind) \(text)")
    }

    @Test func repliesBecomeResults() async throws {
        let spec = try ForwardSpec.parse("0:127.0.0.1:3000", kind: .remote)
        let deadline = ContinuousClock.now + .seconds(5)

        let allocating = try FakeMaster(reply: { id in MuxClient.packet(MuxClient.Message.remotePort, [.u32(id), .u32(35733)]) })
        var client = try await MuxClient.connect(allocating.path, until: deadline)
        #expect(try await client.forward(spec, until: deadline) == 35733)
        allocating.close()

        let refusing = try FakeMaster(reply: { id in
            MuxClient.packet(MuxClient.Message.failure, [.u32(id), .string("remote port forwarding failed for listen port 8022")])
        })
        var refused = try await MuxClient.connect(refusing.path, until: deadline)
        do {
            _ = try await refused.forward(spec, until: deadline)
            Issue.record("a refusal was taken for success")
        } catch {
            #expect(error == .refused("forwarding request failed: remote port forwarding failed for listen port 8022"))
            // The text is what ssh prints, so one classifier serves both.
            #expect(SSHFailure.classify(stderr: error.description, status: 255).failureClass == .remoteListener)
        }
        refusing.close()
    }
}

/// The transport check is one channel open through the master that the server must refuse: the refusal is
/// the answer, silence (a hung transport) or no master is none.
@Suite(.serialized) struct TransportRoundTripTests {
    @Test func theServersRefusalIsTheAnswer() async throws {
        let master = try FakeMaster(reply: { id in
            MuxClient.packet(MuxClient.Message.failure, [.u32(id), .string("Session open refused by peer")])
        })
        defer { master.close() }
        let outcome = await TransportCheck.run(socket: master.path, timeout: 2)
        #expect(outcome.answered)
        #expect(outcome.seconds < 1)
        // What was asked: a stdio forward to 127.0.0.1 port 0, which no server can serve.
        let request = try #require(master.requests.first)
        #expect(request == MuxClient.packet(MuxClient.Message.newStdioForward, [.u32(1), .string(""), .string("127.0.0.1"), .u32(0)]))
    }

    @Test func silenceAndNoMasterAreNoAnswer() async throws {
        let silent = try FakeMaster(reply: { _ in [] })
        defer { silent.close() }
        let start = ContinuousClock.now
        let outcome = await TransportCheck.run(socket: silent.path, timeout: 0.3)
        #expect(!outcome.answered)
        #expect(ContinuousClock.now - start >= .milliseconds(290))
        #expect(!(await TransportCheck.run(socket: "/nonexistent/fwd-master", timeout: 0.3)).answered)
    }
}

/// Right after a master's login fwd sends the server ignore messages through a proxy connection to the master
/// (MuxClient.nudge): a request that crossed sshd's host-key notice has its answer held by sshd until the
/// client's next packet acknowledges that notice.
@Suite(.serialized) struct NudgeTests {
    @Test func ignoreMessagesGoThroughOneProxyConnection() async throws {
        let master = try FakeMaster(concurrent: true)
        defer { master.close() }
        await MuxClient.nudge(master.path, at: [.milliseconds(1), .milliseconds(5), .milliseconds(10)])
        try await Task.sleep(for: .milliseconds(50))  // the fake records on its own thread
        #expect(master.proxyRequests == 1)
        #expect(master.proxiedMessages == Array(repeating: MuxClient.ignoreMessage, count: 3))
        #expect(master.requests.isEmpty)
        // The message as the master's proxy mode reads it: length 6, padding length 0, SSH2_MSG_IGNORE (2),
        // then the ignored data as an empty string.
        #expect(MuxClient.ignoreMessage == [0, 0, 0, 6, 0, 2, 0, 0, 0, 0])
    }

    @Test func aHeldAnswerIsReleasedByANudge() async throws {
        // Like sshd with Nagle on: the round trip's answer goes out only once the client has sent something else.
        let nudged = Arrivals()
        let master = try FakeMaster(concurrent: true, reply: { id in
            guard nudged.wait(until: 1, for: 10) else { return [] }
            return MuxClient.packet(MuxClient.Message.failure, [.u32(id), .string("open failed")])
        }, proxied: { _ in nudged.arrive() })
        defer { master.close() }
        let socket = master.path
        let start = ContinuousClock.now
        async let roundTrip = MuxClient.transportRoundTrip(socket, until: .now + .seconds(10))
        await MuxClient.nudge(socket, at: [.milliseconds(5)])
        guard case .success(let rtt) = await roundTrip else {
            Issue.record("the held round trip was never answered")
            return
        }
        #expect(ContinuousClock.now - start < .seconds(5))
        #expect(rtt > .zero)
        #expect(master.proxiedMessages == [MuxClient.ignoreMessage])
    }

    @Test func noMasterEndsTheNudgesAtOnce() async throws {
        let start = ContinuousClock.now
        await MuxClient.nudge("/nonexistent/fwd-master", at: [.milliseconds(1), .seconds(5)])
        #expect(ContinuousClock.now - start < .seconds(2))
    }
}

/// Counts what reached a fake master on any of its client threads, and lets another thread wait for it.
private final class Arrivals: @unchecked Sendable {
    private let condition = NSCondition()
    private var count = 0

    func arrive() {
        condition.withLock {
            count += 1
            condition.broadcast()
        }
    }

    func wait(until wanted: Int, for seconds: Double) -> Bool {
        let limit = Date(timeIntervalSinceNow: seconds)
        return condition.withLock {
            while count < wanted { if !condition.wait(until: limit) { return count >= wanted } }
            return true
        }
    }
}

/// Accepts mux clients on a blocking thread, one at a time unless `concurrent` (a thread each): answers the
/// hello, records each request body, and answers it with `reply` (MUX_S_OK by default). A MUX_C_PROXY request
/// is answered by the fake itself; what then comes over that connection is recorded and passed to `proxied`.
private final class FakeMaster: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var recorded: [[UInt8]] = []
    private var proxies = 0
    private var proxied: [[UInt8]] = []
    var requests: [[UInt8]] { lock.withLock { recorded } }
    var proxyRequests: Int { lock.withLock { proxies } }
    var proxiedMessages: [[UInt8]] { lock.withLock { proxied } }

    init(concurrent: Bool = false, reply: @escaping @Sendable (UInt32) -> [UInt8] = { MuxClient.packet(MuxClient.Message.ok, [.u32($0)]) },
         proxied onProxied: @escaping @Sendable ([UInt8]) -> Void = { _ in }) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-mux-\(UUID().uuidString.prefix(8))").path
        fd = try UnixSocket.listen(path: path, backlog: 4, nonBlocking: false).release()
        let listener = fd
        // The thread owns the listening descriptor and closes it itself once `close()` has shut it down: were
        // it closed while this thread still served a client, the number could be reused by the next fake, and
        // this thread would accept that fake's connections and answer them with this fake's `reply`.
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else {
                    Glibc.close(listener)
                    return
                }
                guard concurrent else {
                    serve(client, reply, onProxied)
                    Glibc.close(client)
                    continue
                }
                Thread.detachNewThread { [self] in
                    serve(client, reply, onProxied)
                    Glibc.close(client)
                }
            }
        }
    }

    private func serve(_ client: Int32, _ reply: (UInt32) -> [UInt8], _ onProxied: ([UInt8]) -> Void) {
        guard readPacket(client) != nil else { return }  // MUX_MSG_HELLO
        _ = Posix.sendAll(client, MuxClient.packet(MuxClient.Message.hello, [.u32(MuxClient.version)]))
        while let body = readPacket(client) {
            let framed = MuxClient.bigEndian(UInt32(body.count)) + body
            let id = body.dropFirst(4).prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            if body.prefix(4).elementsEqual(MuxClient.bigEndian(MuxClient.Message.proxy)) {
                lock.withLock { proxies += 1 }
                _ = Posix.sendAll(client, MuxClient.packet(MuxClient.Message.proxyStarted, [.u32(id)]))
                while let message = readPacket(client) {
                    let framed = MuxClient.bigEndian(UInt32(message.count)) + message
                    lock.withLock { proxied.append(framed) }
                    onProxied(framed)
                }
                return
            }
            lock.withLock { recorded.append(framed) }
            let answer = reply(id)
            if !answer.isEmpty { _ = Posix.sendAll(client, answer) }
        }
    }

    private func readPacket(_ client: Int32) -> [UInt8]? {
        guard let length = readExactly(client, 4) else { return nil }
        return readExactly(client, Int(length.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }))
    }

    private func readExactly(_ client: Int32, _ count: Int) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: max(count, 1))
        while out.count < count {
            let n = read(client, &buffer, count - out.count)
            guard n > 0 else { return nil }
            out += buffer[0..<n]
        }
        return out
    }

    func close() {
        shutdown(fd, Int32(SHUT_RDWR))  // wakes `accept`, which then closes the descriptor
        unlink(path)
    }
}
