import Foundation
import Testing
@testable import FwdCore
import FwdTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct ProbeTests {
    private func local(_ listen: ForwardEndpoint, target: ForwardEndpoint = .tcp(host: "db.lan", port: 5432)) -> ForwardSpec {
        ForwardSpec(kind: .local, listen: listen, target: target)
    }

    private func local(port: Int) -> ForwardSpec { local(.tcp(host: nil, port: port)) }

    private func dynamic(port: Int) -> ForwardSpec { ForwardSpec(kind: .dynamic, listen: .tcp(host: nil, port: port), target: nil) }

    // MARK: tcp

    @Test func tcpAgainstAClosedPortIsListenerDown() async throws {
        let result = await HealthProbe(kind: .tcp).run(local(port: try closedPort()))
        guard case .listenerDown(let message) = result.outcome else {
            Issue.record("expected listenerDown, got \(result.outcome)")
            return
        }
        #expect(message.contains("nothing listens on 127.0.0.1:"))
        #expect(result.latencyMs > 0)
    }

    @Test func tcpAgainstAServerThatClosesAtOnceIsTargetDown() async throws {
        let server = try FakeServer(.closeAtOnce)
        defer { server.stop() }
        let result = await HealthProbe(kind: .tcp).run(local(port: server.port))
        guard case .targetDown = result.outcome else {
            Issue.record("expected targetDown, got \(result.outcome)")
            return
        }
    }

    @Test func tcpAgainstAServerThatHoldsIsUpAfterTheSettleWindow() async throws {
        let server = try FakeServer(.hold)
        defer { server.stop() }
        let result = await HealthProbe(kind: .tcp).run(local(port: server.port))
        #expect(result.outcome == .up)
        #expect(result.latencyMs >= 200, "up only after the settle window")
    }

    @Test func wildcardAndLocalhostBindsAreReachedOnLoopback() async throws {
        let server = try FakeServer(.banner)
        defer { server.stop() }
        for host in [nil, "", "*", "0.0.0.0", "localhost", "127.0.0.1"] as [String?] {
            let result = await HealthProbe(kind: .banner).run(local(.tcp(host: host, port: server.port)))
            #expect(result.outcome == .up, "bind \(String(describing: host))")
        }
    }

    // MARK: public forwards (Sharing)

    @Test func aSharedLocalListenerIsConnectedToAtEachSharedAddressAndAnAddressThatRefusesIsNotShared() async throws {
        let server = try FakeServer(.banner)
        defer { server.stop() }
        let wildcard = local(.tcp(host: "0.0.0.0", port: server.port))
        // The server listens on 127.0.0.1 only; 127.0.0.2 is an address of this machine where nothing listens.
        let reached = await HealthProbe(kind: .banner, sharedAt: ["127.0.0.1"]).run(wildcard)
        #expect(reached.outcome == .up)
        #expect(reached.shared == ["127.0.0.1:\(server.port)"])
        let refused = await HealthProbe(kind: .banner, sharedAt: ["127.0.0.1", "127.0.0.2"]).run(wildcard)
        #expect(refused.outcome == .notShared(.localAddressRefused(address: "127.0.0.2", port: server.port)))
        #expect(refused.shared == ["127.0.0.1:\(server.port)"])
        // Not shared: nothing is said about sharing.
        #expect(await HealthProbe(kind: .banner).run(wildcard).shared == nil)
    }

    @Test func aSharedLocalListenerThatFailsItsProbeIsNotCheckedFurther() async throws {
        let port = try closedPort()
        let result = await HealthProbe(kind: .tcp, sharedAt: ["127.0.0.1"]).run(local(.tcp(host: "0.0.0.0", port: port)))
        guard case .listenerDown = result.outcome else {
            Issue.record("expected listenerDown, got \(result.outcome)")
            return
        }
        #expect(result.shared == [])
    }

    @Test func whereAPublicForwardIsCheckedDependsOnItsKindAndBind() throws {
        func spec(_ text: String, _ kind: ForwardKind) throws -> ForwardSpec { try ForwardSpec.parse(text, kind: kind) }
        let server = "198.18.1.2"
        // -R: a wildcard is checked at the server's own address, a specific address at itself.
        #expect(Sharing.remoteCheckHost(try spec("0.0.0.0:18750:127.0.0.1:80", .remote), isPublic: true, server: server) == server)
        #expect(Sharing.remoteCheckHost(try spec("*:18750:127.0.0.1:80", .remote), isPublic: true, server: server) == server)
        #expect(Sharing.remoteCheckHost(try spec(":18750:127.0.0.1:80", .remote), isPublic: true, server: server) == server)
        #expect(Sharing.remoteCheckHost(try spec("198.18.1.9:18750:127.0.0.1:80", .remote), isPublic: true, server: server) == "198.18.1.9")
        // Nothing to check: not public, loopback, no bind written, unknown or loopback server, the other family.
        #expect(Sharing.remoteCheckHost(try spec("0.0.0.0:18750:127.0.0.1:80", .remote), isPublic: false, server: server) == nil)
        #expect(Sharing.remoteCheckHost(try spec("127.0.0.1:18750:127.0.0.1:80", .remote), isPublic: true, server: server) == nil)
        #expect(Sharing.remoteCheckHost(try spec("18750:127.0.0.1:80", .remote), isPublic: true, server: server) == nil)
        #expect(Sharing.remoteCheckHost(try spec("0.0.0.0:18750:127.0.0.1:80", .remote), isPublic: true, server: nil) == nil)
        #expect(Sharing.remoteCheckHost(try spec("0.0.0.0:18750:127.0.0.1:80", .remote), isPublic: true, server: "127.0.0.1") == nil)
        #expect(Sharing.remoteCheckHost(try spec("0.0.0.0:18750:127.0.0.1:80", .remote), isPublic: true, server: "2001:db8::2") == nil)
        #expect(Sharing.remoteCheckHost(try spec("[::]:18750:127.0.0.1:80", .remote), isPublic: true, server: server) == nil)
        // -L/-D: a specific address is itself; a wildcard is every address of its family, loopback left out.
        let interfaces = ["127.0.0.1", "198.18.1.1", "::1", "2001:db8::1", "198.18.3.1"]
        #expect(Sharing.localAddresses(try spec("198.18.3.1:1080", .dynamic), isPublic: true, interfaces: interfaces) == ["198.18.3.1"])
        #expect(Sharing.localAddresses(try spec("0.0.0.0:1080", .dynamic), isPublic: true, interfaces: interfaces) == ["198.18.1.1", "198.18.3.1"])
        #expect(Sharing.localAddresses(try spec("[::]:1080", .dynamic), isPublic: true, interfaces: interfaces) == ["2001:db8::1"])
        #expect(Sharing.localAddresses(try spec("*:8080:wiki:80", .local), isPublic: true, interfaces: interfaces) == ["198.18.1.1", "2001:db8::1", "198.18.3.1"])
        #expect(Sharing.localAddresses(try spec("1080", .dynamic), isPublic: true, interfaces: interfaces) == [])
        #expect(Sharing.localAddresses(try spec("0.0.0.0:1080", .dynamic), isPublic: false, interfaces: interfaces) == [])
    }

    @Test func theServersOwnAddressIsWhereTheMasterConnectedUnlessAHopCarriesIt() {
        let path = MasterPath(localAddress: "198.18.1.1", localPort: 40000, remoteAddress: "198.18.1.2", remotePort: 22)
        let direct = ResolvedHost(lines: [("hostname", "sshd-a"), ("proxyjump", "none"), ("proxycommand", "none")])
        #expect(Sharing.serverAddress(resolved: direct, path: path) == "198.18.1.2")
        #expect(Sharing.serverAddress(resolved: direct, path: nil) == "sshd-a")
        #expect(Sharing.serverAddress(resolved: nil, path: path) == "198.18.1.2")
        // Behind a jump the master's connection goes to the first hop: the last hop's target is the server.
        let jumped = ResolvedHost(lines: [("hostname", "inner.lan"), ("proxyjump", "bastion")])
        #expect(Sharing.serverAddress(resolved: jumped, path: path) == "inner.lan")
        let proxied = ResolvedHost(lines: [("hostname", "10.1.2.3"), ("proxycommand", "nc %h %p")])
        #expect(Sharing.serverAddress(resolved: proxied, path: path) == "10.1.2.3")
    }

    @Test func anIPv6WildcardIsReachedOnIPv6Loopback() async throws {
        guard let server = try? FakeServer(.banner, host: "::1") else { return }  // no IPv6 here
        defer { server.stop() }
        for host in ["::", "::1"] {
            let result = await HealthProbe(kind: .banner).run(local(.tcp(host: host, port: server.port)))
            #expect(result.outcome == .up, "bind \(host)")
        }
    }

    // MARK: banner

    @Test func bannerFromTheServerIsUp() async throws {
        let server = try FakeServer(.banner)
        defer { server.stop() }
        let result = await HealthProbe(kind: .banner).run(local(port: server.port))
        #expect(result.outcome == .up)
        #expect(result.latencyMs > 0)
    }

    @Test func aSilentServerIsNoAnswerWithinTheTimeout() async throws {
        let server = try FakeServer(.hold)
        defer { server.stop() }
        let result = await HealthProbe(kind: .banner, timeout: 0.5).run(local(port: server.port))
        guard case .noAnswer = result.outcome else {
            Issue.record("expected noAnswer, got \(result.outcome)")
            return
        }
        #expect(result.latencyMs >= 450, "waits out the timeout")
    }

    @Test func bannerFromAServerThatClosesIsTargetDown() async throws {
        let server = try FakeServer(.closeAtOnce)
        defer { server.stop() }
        let result = await HealthProbe(kind: .banner).run(local(port: server.port))
        guard case .targetDown = result.outcome else {
            Issue.record("expected targetDown, got \(result.outcome)")
            return
        }
    }

    // MARK: http

    @Test func anyHTTPStatusIsUpAndTheRequestNamesTheTarget() async throws {
        let server = try FakeServer(.http("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
        defer { server.stop() }
        let result = await HealthProbe(kind: .http).run(local(.tcp(host: nil, port: server.port), target: .tcp(host: "wiki.lan", port: 8080)))
        #expect(result.outcome == .up)
        let request = String(decoding: server.received.first ?? [], as: UTF8.self)
        #expect(request == "GET / HTTP/1.1\r\nHost: wiki.lan:8080\r\nConnection: close\r\nUser-Agent: fwd-probe\r\n\r\n")
    }

    @Test func httpAgainstAServerThatClosesIsTargetDown() async throws {
        let server = try FakeServer(.closeAtOnce)
        defer { server.stop() }
        let result = await HealthProbe(kind: .http).run(local(port: server.port))
        guard case .targetDown = result.outcome else {
            Issue.record("expected targetDown, got \(result.outcome)")
            return
        }
    }

    @Test func httpAgainstSomethingElseIsTargetDownWithWhatItSaid() async throws {
        let server = try FakeServer(.http("SSH-2.0-OpenSSH_9.2\r\n"))
        defer { server.stop() }
        let result = await HealthProbe(kind: .http).run(local(port: server.port))
        guard case .targetDown(let message) = result.outcome else {
            Issue.record("expected targetDown, got \(result.outcome)")
            return
        }
        #expect(message == "127.0.0.1:\(server.port) answered, but not as HTTP (it greets like SSH: \"SSH-2.0-OpenSSH_9.2\\r\\n\")")
    }

    @Test func httpAgainstASilentServerIsNoAnswer() async throws {
        let server = try FakeServer(.hold)
        defer { server.stop() }
        let result = await HealthProbe(kind: .http, timeout: 0.3).run(local(port: server.port))
        guard case .noAnswer = result.outcome else {
            Issue.record("expected noAnswer, got \(result.outcome)")
            return
        }
    }

    @Test func hostHeaderFollowsTheTarget() {
        #expect(HealthProbe.hostHeader(for: local(.tcp(host: nil, port: 1), target: .tcp(host: "wiki", port: 80))) == "wiki")
        #expect(HealthProbe.hostHeader(for: local(.tcp(host: nil, port: 1), target: .tcp(host: "::1", port: 8080))) == "[::1]:8080")
        #expect(HealthProbe.hostHeader(for: local(.tcp(host: nil, port: 1), target: .unix(path: "/run/app.sock"))) == "localhost")
    }

    // MARK: socks

    @Test func socksThatGrantsTheConnectIsUp() async throws {
        let server = try FakeServer(.socks(reply: 0))
        defer { server.stop() }
        let probe = HealthProbe(kind: .socks, socksTarget: SocksTarget(host: "127.0.0.1", port: 2222))
        let result = await probe.run(dynamic(port: server.port))
        #expect(result.outcome == .up)
        #expect(server.received.last == [5, 1, 0, 1, 127, 0, 0, 1, 0x08, 0xae])
    }

    /// Without probe_target nothing is assumed about the server: the handshake alone, no CONNECT.
    @Test func socksWithoutATargetOnlyShakesHands() async throws {
        let server = try FakeServer(.socks(reply: 0))
        defer { server.stop() }
        #expect(await HealthProbe(kind: .socks).run(dynamic(port: server.port)).outcome == .up)
        #expect(server.received.isEmpty, "no CONNECT was sent: \(server.received)")
    }

    @Test func socksConnectRequestsUseTheRightAddressType() {
        #expect(HealthProbe.connectRequest(to: SocksTarget(host: "::1", port: 22)) == [5, 1, 0, 4] + Array(repeating: 0, count: 15) + [1, 0, 22])
        #expect(HealthProbe.connectRequest(to: SocksTarget(host: "db", port: 5432)) == [5, 1, 0, 3, 2, 100, 98, 0x15, 0x38])
        #expect(HealthProbe.connectRequest(to: SocksTarget(host: "db", port: 0)) == nil)
    }

    @Test func socksThatRefusesTheConnectIsTargetDown() async throws {
        let server = try FakeServer(.socks(reply: 5))
        defer { server.stop() }
        let result = await HealthProbe(kind: .socks, socksTarget: SocksTarget(host: "wiki.lan", port: 80)).run(dynamic(port: server.port))
        #expect(result.outcome == .targetDown("the SOCKS proxy on 127.0.0.1:\(server.port) could not connect to probe_target wiki.lan:80: connection refused"))
    }

    @Test func socksThatClosesAfterTheGreetingIsTargetDown() async throws {
        let server = try FakeServer(.socksCloseAfterGreeting)
        defer { server.stop() }
        let result = await HealthProbe(kind: .socks, socksTarget: SocksTarget(host: "wiki.lan", port: 80)).run(dynamic(port: server.port))
        guard case .targetDown(let message) = result.outcome else {
            Issue.record("expected targetDown, got \(result.outcome)")
            return
        }
        #expect(message.contains("the server could not connect to probe_target wiki.lan:80"))
    }

    @Test func somethingThatIsNotSOCKSIsTargetDown() async throws {
        let server = try FakeServer(.banner)
        defer { server.stop() }
        let result = await HealthProbe(kind: .socks).run(dynamic(port: server.port))
        guard case .targetDown(let message) = result.outcome else {
            Issue.record("expected targetDown, got \(result.outcome)")
            return
        }
        #expect(message.contains("not a SOCKS5 proxy"))
    }

    @Test func socksAgainstAClosedPortIsListenerDown() async throws {
        let result = await HealthProbe(kind: .socks).run(dynamic(port: try closedPort()))
        guard case .listenerDown = result.outcome else {
            Issue.record("expected listenerDown, got \(result.outcome)")
            return
        }
    }

    @Test func socksThatNeverAnswersIsNoAnswer() async throws {
        let server = try FakeServer(.hold)
        defer { server.stop() }
        let result = await HealthProbe(kind: .socks, timeout: 0.3).run(dynamic(port: server.port))
        guard case .noAnswer = result.outcome else {
            Issue.record("expected noAnswer, got \(result.outcome)")
            return
        }
    }

    // MARK: protocol probes

    /// Each protocol: the answer its server gives, and whether the probe speaks first.
    static let protocols: [(kind: ProbeKind, speaksFirst: Bool, answer: [UInt8])] = [
        (.postgres, true, Array("N".utf8)),
        (.mysql, false, [0x4a, 0, 0, 0, 10] + Array("8.0.36\0".utf8) + [UInt8](repeating: 1, count: 20)),
        (.ssh, false, Array("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".utf8)),
        (.http, true, Array("HTTP/1.1 302 Found\r\nLocation: /login\r\n\r\n".utf8)),
        (.tls, true, [0x16, 3, 3, 0, 0x4a, 2, 0, 0, 0x46, 3, 3] + [UInt8](repeating: 7, count: 32)),
        (.smtp, false, Array("220 mail.lan ESMTP Postfix\r\n".utf8)),
        (.imap, false, Array("* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n".utf8)),
        (.pop3, false, Array("+OK Dovecot ready.\r\n".utf8)),
        (.ftp, false, Array("220 (vsFTPd 3.0.3)\r\n".utf8)),
        (.rdp, true, [3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 2, 0, 8, 0, 1, 0, 0, 0]),
        (.vnc, false, Array("RFB 003.008\n".utf8)),
        (.redis, true, Array("+PONG\r\n".utf8)),
    ]

    /// Another protocol's answer: HTTP's for everything but HTTP, which gets an SSH banner.
    private func otherAnswer(for kind: ProbeKind) -> [UInt8] {
        kind == .http || kind == .ssh ? Array("RFB 003.008\n".utf8) : Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)
    }

    @Test(arguments: ProbeTests.protocols.map(\.kind))
    func aProtocolProbePassesWhenTheServerAnswersRight(_ kind: ProbeKind) async throws {
        let spec = try #require(Self.protocols.first { $0.kind == kind })
        let server = try FakeServer(.respond(readFirst: spec.speaksFirst, answer: spec.answer))
        defer { server.stop() }
        let result = await HealthProbe(kind: kind).run(local(port: server.port))
        #expect(result.outcome == .up, "\(kind): \(result.outcome)")
        #expect(result.latencyMs > 0)
        if spec.speaksFirst {
            #expect(server.received.first == ProtocolCheck.check(for: kind, hostHeader: "db.lan:5432")?.request || kind == .tls,
                    "\(kind) sent its request")
        }
    }

    @Test(arguments: ProbeTests.protocols.map(\.kind))
    func aProtocolProbeSaysWhenAnotherProtocolAnswers(_ kind: ProbeKind) async throws {
        let spec = try #require(Self.protocols.first { $0.kind == kind })
        let server = try FakeServer(.respond(readFirst: spec.speaksFirst, answer: otherAnswer(for: kind)))
        defer { server.stop() }
        let result = await HealthProbe(kind: kind).run(local(port: server.port))
        let name = try #require(ProtocolCheck.check(for: kind, hostHeader: "x")).name
        guard case .targetDown(let message) = result.outcome else {
            Issue.record("\(kind): expected targetDown, got \(result.outcome)")
            return
        }
        #expect(message.hasPrefix("127.0.0.1:\(server.port) answered, but not as \(name) ("), "\(message)")
    }

    @Test(arguments: ProbeTests.protocols.map(\.kind))
    func aProtocolProbeOfASilentServerIsNoAnswer(_ kind: ProbeKind) async throws {
        let server = try FakeServer(.hold)
        defer { server.stop() }
        let result = await HealthProbe(kind: kind, timeout: 0.3).run(local(port: server.port))
        guard case .noAnswer(let message) = result.outcome else {
            Issue.record("\(kind): expected noAnswer, got \(result.outcome)")
            return
        }
        #expect(message.contains("sent no"), "\(message)")
    }

    @Test func aPortThatAnswersSSHIsNamed() async throws {
        let server = try FakeServer(.respond(readFirst: true, answer: Array("SSH-2.0-OpenSSH_9.2\r\n".utf8)))
        defer { server.stop() }
        let result = await HealthProbe(kind: .postgres).run(local(port: server.port))
        #expect(result.outcome == .targetDown("127.0.0.1:\(server.port) answered, but not as PostgreSQL (it greets like SSH: \"SSH-2.0-OpenSSH_9.2\\r\\n\")"))
    }

    @Test func refusalsInTheProtocolAreTargetDown() async throws {
        let cases: [(ProbeKind, [UInt8], String)] = [
            (.mysql, [23, 0, 0, 0, 0xff, 0x10, 0x04] + Array("Too many connections".utf8), "MySQL refused the connection: Too many connections"),
            (.smtp, Array("554 no service\r\n".utf8), "the SMTP server refused: 554 no service"),
            (.pop3, Array("-ERR busy\r\n".utf8), "the POP3 server refused: -ERR busy"),
            (.redis, Array("-LOADING Redis is loading\r\n".utf8), "Redis answered with an error: -LOADING Redis is loading"),
        ]
        for (kind, answer, why) in cases {
            let server = try FakeServer(.respond(readFirst: kind == .redis, answer: answer))
            defer { server.stop() }
            let result = await HealthProbe(kind: kind).run(local(port: server.port))
            #expect(result.outcome == .targetDown("127.0.0.1:\(server.port): \(why)"), "\(kind)")
        }
    }

    /// A Redis error line that never ends: the probe reads at most `receiveLimit` bytes and judges from those,
    /// long before its timeout, instead of buffering the whole answer (docs/reliability.md, "Bounded reads").
    @Test func aHugeAnswerIsJudgedFromTheFirst64KiB() async throws {
        let total = 64 << 20
        let server = try FakeServer(.flood(head: Array("-".utf8), filler: UInt8(ascii: "x"), count: total))
        let start = ContinuousClock.now
        let result = await HealthProbe(kind: .redis, timeout: 60).run(local(port: server.port))
        let elapsed = ContinuousClock.now - start
        #expect(result.outcome == .targetDown("127.0.0.1:\(server.port) sent 64 KiB without a complete Redis answer: \"-\(String(repeating: "x", count: 39))\""))
        #expect(elapsed < .seconds(30), "judged when the limit was reached, not at the timeout: \(elapsed)")
        server.stop()  // waits for the handler, which ends once the probe's close fails its send
        #expect(server.sent < total, "the probe stopped reading; the server could not send all \(total) bytes (sent \(server.sent))")
    }

    @Test func redisThatWantsAPasswordIsUp() async throws {
        let server = try FakeServer(.respond(readFirst: true, answer: Array("-NOAUTH Authentication required.\r\n".utf8)))
        defer { server.stop() }
        #expect(await HealthProbe(kind: .redis).run(local(port: server.port)).outcome == .up)
    }

    @Test func theTLSClientHelloIsWellFormed() throws {
        let hello = ProtocolCheck.clientHello(serverName: "wiki.lan")
        #expect(hello.prefix(3) == [0x16, 3, 1])
        #expect(Int(hello[3]) << 8 | Int(hello[4]) == hello.count - 5, "record length")
        #expect(hello[5] == 1, "ClientHello")
        #expect(Int(hello[6]) << 16 | Int(hello[7]) << 8 | Int(hello[8]) == hello.count - 9, "handshake length")
        #expect(hello.count > 100 && String(decoding: hello, as: UTF8.self).contains("wiki.lan"))
        #expect(!String(decoding: ProtocolCheck.clientHello(serverName: "10.0.0.1:443"), as: UTF8.self).contains("10.0.0.1"),
                "no SNI for an address")
    }

    @Test func probeTargetsParse() throws {
        #expect(try SocksTarget.parse("wiki.lan:80").get() == SocksTarget(host: "wiki.lan", port: 80))
        #expect(try SocksTarget.parse("[fd00::1]:443").get() == SocksTarget(host: "fd00::1", port: 443))
        #expect(try SocksTarget.parse("10.0.0.5:5432").get() == SocksTarget(host: "10.0.0.5", port: 5432))
        for bad in ["wiki.lan", "wiki.lan:0", "wiki.lan:70000", ":80", "-x:80", "fd00::1:443", "a b:80", "[::1]80"] {
            guard case .failure = SocksTarget.parse(bad) else {
                Issue.record("\(bad) should not parse")
                continue
            }
        }
    }

    // MARK: UNIX sockets

    @Test func unixSocketListeners() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/l.sock"
        let spec = local(.unix(path: path))

        guard case .listenerDown = await HealthProbe(kind: .tcp).run(spec).outcome else {
            Issue.record("no socket file should be listenerDown")
            return
        }
        let banner = try FakeServer(.banner, unixPath: path)
        #expect(await HealthProbe(kind: .banner).run(spec).outcome == .up)
        #expect(await HealthProbe(kind: .tcp).run(spec).outcome == .up)
        banner.stop()

        let closing = try FakeServer(.closeAtOnce, unixPath: path)
        defer { closing.stop() }
        guard case .targetDown = await HealthProbe(kind: .tcp).run(spec).outcome else {
            Issue.record("a UNIX listener that closes at once should be targetDown")
            return
        }
    }

    // MARK: kinds

    @Test func noneIsUpWithoutTouchingAnything() async throws {
        let result = await HealthProbe(kind: .none).run(local(port: try closedPort()))
        #expect(result == ProbeResult(outcome: .up, latencyMs: 0))
    }

    @Test func remoteForwardsAlwaysGoThroughTheMaster() throws {
        let remote = try ForwardSpec.parse("8080:localhost:80", kind: .remote)
        let remoteUnix = try ForwardSpec.parse("/tmp/r.sock:localhost:80", kind: .remote)
        #expect(HealthProbe(kind: .tcp).effectiveKind(for: remote) == .remote)
        #expect(HealthProbe(kind: .postgres).effectiveKind(for: remote) == .postgres)
        #expect(HealthProbe(kind: .postgres).effectiveKind(for: dynamic(port: 1)) == .socks)
        #expect(HealthProbe(kind: .remote).effectiveKind(for: remoteUnix) == ProbeKind.none)
        #expect(HealthProbe(kind: .none).effectiveKind(for: remote) == ProbeKind.none)
        #expect(HealthProbe(kind: .remote).effectiveKind(for: local(port: 1)) == .tcp)
        #expect(HealthProbe(kind: .remote).effectiveKind(for: dynamic(port: 1)) == .socks)
        #expect(HealthProbe(kind: .banner).effectiveKind(for: local(port: 1)) == .banner)
    }

    @Test func remoteWithoutAMasterOrPortSaysWhy() async throws {
        let remote = try ForwardSpec.parse("8080:localhost:80", kind: .remote)
        #expect(await HealthProbe(kind: .remote).run(remote).outcome
            == .listenerDown("no control socket for -R 8080:localhost:80: the master is not running"))
        let allocated = try ForwardSpec.parse("0:localhost:80", kind: .remote)
        guard case .noAnswer = await HealthProbe(kind: .remote, master: MasterProbeContext(controlSocket: "/nonexistent")).run(allocated).outcome else {
            Issue.record("-R 0 without an allocated port cannot be probed")
            return
        }
    }

    @Test func remoteWithAGoneMasterIsListenerDownAndLeavesNoChild() async throws {
        let remote = try ForwardSpec.parse("127.0.0.1:8080:localhost:80", kind: .remote)
        let probe = HealthProbe(kind: .remote, timeout: 3, master: MasterProbeContext(controlSocket: "/nonexistent/fwd-test.sock"))
        let result = await probe.run(remote)
        guard case .listenerDown(let message) = result.outcome else {
            Issue.record("expected listenerDown, got \(result.outcome)")
            return
        }
        #expect(message.contains("127.0.0.1:8080"))
    }

    // MARK: resources

    #if os(Linux)
    /// A leak of one descriptor per probe would show as 200; a small margin absorbs suites running in parallel.
    @Test func probesDoNotLeakDescriptors() async throws {
        let banner = try FakeServer(.banner, closesAfterAnswer: true)
        let closing = try FakeServer(.closeAtOnce)
        let http = try FakeServer(.http("HTTP/1.0 200 OK\r\n\r\n"))
        let socks = try FakeServer(.socks(reply: 0), closesAfterAnswer: true)
        let refused = try closedPort()
        defer { [banner, closing, http, socks].forEach { $0.stop() } }

        func probeAll() async {
            #expect(await HealthProbe(kind: .banner).run(local(port: banner.port)).outcome == .up)
            #expect(await HealthProbe(kind: .tcp).run(local(port: closing.port)).outcome != .up)
            #expect(await HealthProbe(kind: .http).run(local(port: http.port)).outcome == .up)
            #expect(await HealthProbe(kind: .socks).run(dynamic(port: socks.port)).outcome == .up)
            #expect(await HealthProbe(kind: .tcp).run(local(port: refused)).outcome != .up)
        }
        await probeAll()  // warm up lazily opened descriptors (dispatch, resolver)
        let before = try openDescriptors()
        for _ in 0..<40 { await probeAll() }
        let after = try openDescriptors()
        #expect(after - before < 20, "\(before) descriptors before 200 probes, \(after) after")
    }
    #endif
}

// MARK: - Fake servers

private func closedPort() throws -> Int {
    let server = try FakeServer(.closeAtOnce)
    let port = server.port
    server.stop()
    return port
}

private func temporaryDirectory() throws -> String {
    var template = Array("/tmp/fwd-probe-XXXXXX".utf8CString)
    guard let path = mkdtemp(&template) else { throw POSIXError(.EIO) }
    return String(cString: path)
}

private func openDescriptors() throws -> Int {
    try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
}

/// A listener on 127.0.0.1 (or a UNIX socket) that treats each connection one way: the shared `TestListener`
/// with the protocol behaviours the probes are tested against. Connections the behaviour keeps open are closed
/// by `stop()`.
private final class FakeServer: @unchecked Sendable {
    enum Behaviour: Sendable {
        case closeAtOnce
        case hold
        case banner
        /// Reads the request head, writes the answer and closes.
        case http(String)
        /// Answers the greeting with 05 00 and the CONNECT with REP `reply`; keeps the connection if granted.
        case socks(reply: UInt8)
        case socksCloseAfterGreeting
        /// Reads one request first when `readFirst` (what the client sends arrives in one piece on loopback),
        /// then writes `answer` and keeps the connection.
        case respond(readFirst: Bool, answer: [UInt8])
        /// Reads one request, then sends `head` and `count` bytes of `filler` in 64 KiB writes, until the client
        /// stops taking them; `sent` says how many went out.
        case flood(head: [UInt8], filler: UInt8, count: Int)
    }

    let port: Int
    private let behaviour: Behaviour
    private let lock = NSLock()
    private var requests: [[UInt8]] = []
    private let listener: TestListener

    private var floodSent = 0
    /// For `.flood`: the bytes the server got out before the client closed or stopped reading.
    var sent: Int { lock.withLock { floodSent } }

    /// What each connection sent (the HTTP request head, or the SOCKS CONNECT request).
    var received: [[UInt8]] { lock.withLock { requests } }

    /// `closesAfterAnswer` closes even connections the behaviour would keep (a banner, a granted CONNECT).
    init(_ behaviour: Behaviour, host: String = "127.0.0.1", unixPath: String? = nil, closesAfterAnswer: Bool = false) throws {
        self.behaviour = behaviour
        let box = WeakServer()
        let handling = TestListener.Behaviour.handle { connection in
            (box.server?.handle(connection) ?? false) && !closesAfterAnswer
        }
        let listener = try unixPath.map { try TestListener(unixPath: $0, handling) } ?? TestListener(host: host, handling)
        port = listener.port
        self.listener = listener
        box.server = self
    }

    func stop() { listener.stop() }

    /// Returns whether to keep the connection open.
    private func handle(_ connection: Int32) -> Bool {
        switch behaviour {
        case .closeAtOnce:
            return false
        case .hold:
            return true
        case .banner:
            write(connection, Array("SSH-2.0-x\r\n".utf8))
            return true
        case .http(let answer):
            var head: [UInt8] = []
            while !head.ends(with: Array("\r\n\r\n".utf8)), let more = read(connection, 1) { head += more }
            record(head)
            write(connection, Array(answer.utf8))
            return false
        case .socks(let reply):
            guard read(connection, 3) == [5, 1, 0] else { return false }
            write(connection, [5, 0])
            guard let request = readConnect(connection) else { return false }
            record(request)
            write(connection, [5, reply, 0, 1, 0, 0, 0, 0, 0, 0])
            return reply == 0
        case .respond(let readFirst, let answer):
            if readFirst {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, 4096, 0) }
                guard n > 0 else { return false }
                record(Array(buffer[..<n]))
            }
            write(connection, answer)
            return true
        case .flood(let head, let filler, let count):
            var buffer = [UInt8](repeating: 0, count: 4096)
            guard buffer.withUnsafeMutableBytes({ recv(connection, $0.baseAddress, 4096, 0) }) > 0 else { return false }
            // A client that stops reading leaves this send blocked: give up after 1 s.
            var limit = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            write(connection, head)
            let chunk = [UInt8](repeating: filler, count: 64 * 1024)
            var total = 0
            while total < count {
                let n = chunk.withUnsafeBytes { send(connection, $0.baseAddress, min($0.count, count - total), Posix.noSignal) }
                guard n > 0 else { break }
                total += n
                lock.withLock { floodSent = total }
            }
            return false
        case .socksCloseAfterGreeting:
            guard read(connection, 3) == [5, 1, 0] else { return false }
            write(connection, [5, 0])
            _ = readConnect(connection)
            return false
        }
    }

    private func readConnect(_ connection: Int32) -> [UInt8]? {
        guard let head = read(connection, 4) else { return nil }
        let addressLength: Int
        switch head[3] {
        case 1: addressLength = 4
        case 4: addressLength = 16
        case 3:
            guard let length = read(connection, 1) else { return nil }
            guard let rest = read(connection, Int(length[0]) + 2) else { return nil }
            return head + length + rest
        default: return nil
        }
        guard let rest = read(connection, addressLength + 2) else { return nil }
        return head + rest
    }

    private func record(_ bytes: [UInt8]) {
        lock.withLock { requests.append(bytes) }
    }

    /// Exactly `count` bytes, or nil on EOF/timeout.
    private func read(_ connection: Int32, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress! + got, count - got, 0) }
            if n <= 0 { return nil }
            got += n
        }
        return buffer
    }

    private func write(_ connection: Int32, _ bytes: [UInt8]) {
        _ = Posix.sendAll(connection, bytes)
    }
}

/// Lets the listener's handler reach its server without keeping it alive.
private final class WeakServer: @unchecked Sendable {
    weak var server: FakeServer?
}

private extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool {
        count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix
    }
}
