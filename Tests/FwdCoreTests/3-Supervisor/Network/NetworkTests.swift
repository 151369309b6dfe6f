import Foundation
import Testing
@testable import FwdCore
import FwdLab

/// Builds rtnetlink datagrams the way the kernel lays them out (host byte order, 4-byte alignment).
private enum Netlink {
    static func le16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    static func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v) { Array($0) } }
    static func pad(_ b: [UInt8]) -> [UInt8] { b + [UInt8](repeating: 0, count: NetlinkMessage.align(b.count) - b.count) }

    static func attribute(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        pad(le16(UInt16(4 + payload.count)) + le16(type) + payload)
    }

    static func message(_ type: UInt16, _ body: [UInt8]) -> [UInt8] {
        le32(UInt32(16 + body.count)) + le16(type) + le16(0) + le32(0) + le32(0) + body
    }

    static func string(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    static func address(_ type: UInt16, family: UInt8, prefix: UInt8, index: UInt32, local: [UInt8], label: String?) -> [UInt8] {
        var body: [UInt8] = [family, prefix, 0, 0] + le32(index)
        body += attribute(1, local)  // IFA_ADDRESS
        if family == 2 { body += attribute(2, local) }  // IFA_LOCAL
        if let label { body += attribute(3, string(label)) }
        return message(type, body)
    }

    static func link(_ type: UInt16, index: UInt32, flags: UInt32, name: String) -> [UInt8] {
        let body: [UInt8] = [0, 0] + le16(1) + le32(index) + le32(flags) + le32(0xffff_ffff) + attribute(3, string(name))
        return message(type, body)
    }

    static func route(_ type: UInt16, destination: [UInt8], prefix: UInt8, oif: UInt32, table: UInt32) -> [UInt8] {
        var body: [UInt8] = [2, prefix, 0, 0, UInt8(min(table, 255)), 4, 253, 1] + le32(0)
        body += attribute(15, le32(table))
        if prefix > 0 { body += attribute(1, destination) }
        body += attribute(4, le32(oif))
        return message(type, body)
    }
}

@Suite struct NetlinkParsingTests {
    @Test func addressAddedAndRemovedCarryTheAddressAndInterface() {
        let added = Netlink.address(20, family: 2, prefix: 24, index: 2, local: [198, 18, 1, 3], label: "vc")
        let removed = Netlink.address(21, family: 2, prefix: 24, index: 2, local: [198, 18, 1, 1], label: "vc")
        #expect(NetlinkMessage.parse(added + removed) == [
            .address(index: 2, address: "198.18.1.3", prefix: 24, label: "vc", removed: false),
            .address(index: 2, address: "198.18.1.1", prefix: 24, label: "vc", removed: true),
        ])
        var interpreter = NetlinkInterpreter { _ in nil }
        #expect(NetlinkMessage.parse(removed).compactMap { interpreter.interpret($0) } ==
            [.addressRemoved(address: "198.18.1.1", interface: "vc")])
        #expect(NetworkChange.addressRemoved(address: "198.18.1.1", interface: "vc").description == "198.18.1.1 removed from vc")
    }

    @Test func ipv6AddressesHaveNoLabelAndAreNamedByIndex() {
        let v6: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
        let bytes = Netlink.address(21, family: 10, prefix: 64, index: 7, local: v6, label: nil)
        var interpreter = NetlinkInterpreter { $0 == 7 ? "wlan0" : nil }
        #expect(NetlinkMessage.parse(bytes).compactMap { interpreter.interpret($0) } ==
            [.addressRemoved(address: "2001:db8::1", interface: "wlan0")])
    }

    @Test func linkEventsAreReportedOnlyWhenUsabilityFlips() {
        let upFlags: UInt32 = 0x1 | 0x40 | 0x10000
        var interpreter = NetlinkInterpreter { _ in nil }
        let sequence = [
            Netlink.link(16, index: 5, flags: 0x1002, name: "dummy0"),  // created, down
            Netlink.link(16, index: 5, flags: 0x1002, name: "dummy0"),  // an attribute change: nothing new
            Netlink.link(16, index: 5, flags: upFlags, name: "dummy0"),
            Netlink.link(16, index: 5, flags: upFlags, name: "dummy0"),
            Netlink.link(16, index: 5, flags: 0x1, name: "dummy0"),  // admin up, no carrier
            Netlink.link(17, index: 5, flags: 0, name: "dummy0"),  // deleted while down
        ]
        let changes = sequence.flatMap(NetlinkMessage.parse).compactMap { interpreter.interpret($0) }
        #expect(changes == [
            .linkChanged(interface: "dummy0", up: false),
            .linkChanged(interface: "dummy0", up: true),
            .linkChanged(interface: "dummy0", up: false),
        ])
    }

    @Test func routesNameTheirDestinationAndSkipTheLocalTable() {
        var interpreter = NetlinkInterpreter { $0 == 2 ? "vc" : nil }
        let bytes = Netlink.route(25, destination: [198, 18, 1, 0], prefix: 24, oif: 2, table: 254)
            + Netlink.route(24, destination: [], prefix: 0, oif: 2, table: 254)
            + Netlink.route(25, destination: [198, 18, 1, 1], prefix: 32, oif: 2, table: 255)
        #expect(NetlinkMessage.parse(bytes).compactMap { interpreter.interpret($0) } == [
            .routeChanged(destination: "198.18.1.0/24", removed: true, interface: "vc"),
            .routeChanged(destination: "default", removed: false, interface: "vc"),
        ])
    }

    @Test func truncatedAndUnknownMessagesAreSkipped() {
        let good = Netlink.address(20, family: 2, prefix: 24, index: 2, local: [198, 18, 1, 3], label: "vc")
        #expect(NetlinkMessage.parse(Array(good.prefix(good.count - 3))).isEmpty)
        #expect(NetlinkMessage.parse(Netlink.message(3, Netlink.le32(0)) + good).count == 1)
        #expect(NetlinkMessage.parse([1, 2, 3]).isEmpty)
        // A length field that claims less than a header stops the walk instead of looping.
        #expect(NetlinkMessage.parse(Netlink.le32(4) + [UInt8](repeating: 0, count: 12)).isEmpty)
    }
}

@Suite struct MasterPathTests {
    let path = MasterPath(localAddress: "198.18.1.1", localPort: 40000, remoteAddress: "198.18.1.2", remotePort: 22, interface: "vc")

    @Test func procNetTCPLinesGiveEstablishedEndpointsByInode() {
        // Captured from /proc/net/tcp and tcp6 (x86-64, little endian).
        let v4 = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11111 1 0000000000000000 100 0 0 10 0
           1: 010112C6:9C40 020112C6:0016 01 00000000:00000000 02:000A7D1E 00000000     0        0 22222 2 0000000000000000 20 4 30 10 -1
        """
        let parsed = MasterPath.parseEstablished(v4)
        #expect(parsed.count == 1)
        #expect(parsed["22222"]?.local == .init(address: "198.18.1.1", port: 40000))
        #expect(parsed["22222"]?.remote == .init(address: "198.18.1.2", port: 22))
        // A master's accepted clients (a probe of its -L port 8080) are told apart by the listening port.
        #expect(MasterPath.listeningPorts(v4) == [8080])
        let v6 = """
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0000000000000000FFFF0000010112C6:9C41 0000000000000000FFFF0000020112C6:0016 01 00000000:00000000 00:00000000 00000000     0        0 33333 1 0000000000000000 20 4 30 10 -1
           1: B80D0120000000000000000001000000:9C42 B80D0120000000000000000002000000:0016 01 00000000:00000000 00:00000000 00000000     0        0 44444 1 0000000000000000 20 4 30 10 -1
        """
        let parsed6 = MasterPath.parseEstablished(v6)
        #expect(parsed6["33333"]?.local == .init(address: "198.18.1.1", port: 40001))
        #expect(parsed6["44444"]?.local == .init(address: "2001:db8::1", port: 40002))
        #expect(parsed6["44444"]?.remote == .init(address: "2001:db8::2", port: 22))
    }

    @Test func theLocalAddressVanishingRestartsWithoutAsking() {
        let v = PathTrigger.network(.addressRemoved(address: "198.18.1.1", interface: "vc")).verdict(for: path) { _ in .unreachable("x") }
        #expect(v == .restart("network change: 198.18.1.1 removed from vc"))
    }

    @Test func theInterfaceGoingDownIsChecked() {
        let v = PathTrigger.network(.linkChanged(interface: "vc", up: false)).verdict(for: path) { _ in .source("198.18.1.1") }
        #expect(v == .check("network change: vc went down"))
    }

    @Test func unrelatedChangesAreIgnoredWhileTheRouteStillUsesTheSameAddress() {
        let same: (String) -> RouteLookup = { _ in .source("198.18.1.1") }
        for change in [NetworkChange.linkChanged(interface: "dummy0", up: true), .linkChanged(interface: "dummy0", up: false),
                       .addressAdded(address: "198.19.5.1", interface: "dummy0"), .addressRemoved(address: "198.19.5.1", interface: "dummy0"),
                       .routeChanged(destination: "198.19.5.0/24", removed: false, interface: "dummy0")] {
            #expect(PathTrigger.network(change).verdict(for: path, route: same) == .ignore, "\(change)")
        }
    }

    @Test func aRouteChangeIsCheckedWhenTheServerIsUnreachableOrReachedFromElsewhere() {
        let change = PathTrigger.network(.routeChanged(destination: "198.18.1.0/24", removed: true, interface: "vc"))
        #expect(change.verdict(for: path) { _ in .unreachable("Network is unreachable") } ==
            .check("network change: route to 198.18.1.0/24 via vc removed; no route to 198.18.1.2 (Network is unreachable)"))
        #expect(change.verdict(for: path) { _ in .source("10.8.0.2") } ==
            .check("network change: route to 198.18.1.0/24 via vc removed; 198.18.1.2 is now reached from 10.8.0.2, not 198.18.1.1"))
    }

    @Test func resumesAndRequestsAlwaysCheck() {
        #expect(PathTrigger.resumed(asleep: 2400).verdict(for: path) { _ in .source("198.18.1.1") } == .check("resumed after 40 min asleep"))
        #expect(PathTrigger.requested.verdict(for: nil) { _ in .source("x") } == .check("`fwd reconnect` asked"))
    }

    @Test func loopbackMastersIgnoreTheNetworkAndUnknownPathsAreChecked() {
        let loop = MasterPath(localAddress: "127.0.0.1", localPort: 5000, remoteAddress: "127.0.0.1", remotePort: 22)
        let change = PathTrigger.network(.linkChanged(interface: "eth0", up: false))
        #expect(change.verdict(for: loop) { _ in .unreachable("x") } == .ignore)
        #expect(change.verdict(for: nil) { _ in .unreachable("x") } == .check("network change: eth0 went down"))
    }

    @Test func theKernelRouteLookupNamesTheSourceAddress() {
        #expect(MasterPath.route(to: "127.0.0.1") == .source("127.0.0.1"))
        #expect(MasterPath.route(to: "not-an-address") == .unreachable("not an address"))
    }

    #if os(Linux)
    @Test func thePathOfALiveConnectionIsFoundFromItsProcess() async throws {
        // This test process's own TCP connection to a listener on loopback stands in for ssh's.
        let server = try TinyHTTPServer(host: "127.0.0.1", port: 0, body: "x")
        defer { server.stop() }
        let socket = try await ProbeSocket.connect(to: .tcp(host: "127.0.0.1", port: server.port), until: .now + .seconds(2))
        let found = try #require(MasterPath.discover(pid: getpid()))
        #expect(socket.fd >= 0)
        #expect(found.remoteAddress == "127.0.0.1")
        #expect(found.localAddress == "127.0.0.1")
        #expect(found.interface == "lo")
    }
    #endif
}

@Suite struct ResumeDetectionTests {
    @Test func aSleepShowsAsTheSuspendClockRunningAhead() {
        var d = ResumeDetector(threshold: 2)
        #expect(d.tick(.init(withSleep: 100, awake: 100)) == nil)
        #expect(d.tick(.init(withSleep: 102, awake: 102)) == nil)
        // A tick that was late because the machine was busy advances both clocks alike: no sleep.
        #expect(d.tick(.init(withSleep: 110, awake: 110)) == nil)
        #expect(d.tick(.init(withSleep: 2512, awake: 112)) == 2400)
        #expect(d.tick(.init(withSleep: 2514, awake: 114)) == nil)
        #expect(d.tick(.init(withSleep: 2517.5, awake: 116)) == nil, "1.5 s of drift is under the threshold")
    }

    @Test func theWatchReportsAResumeWithItsLength() async throws {
        final class FakeClock: @unchecked Sendable {
            let lock = NSLock()
            var reading = ResumeDetector.Reading(withSleep: 0, awake: 0)
            func read() -> ResumeDetector.Reading { lock.withLock { reading } }
            func advance(awake: Double, asleep: Double) {
                lock.withLock { reading = .init(withSleep: reading.withSleep + awake + asleep, awake: reading.awake + awake) }
            }
        }
        let clock = FakeClock()
        let (triggers, sink) = AsyncStream<PathTrigger>.makeStream()
        let watch = NetworkWatch(monitor: nil, tick: 0.05, clock: clock.read) { sink.yield($0) }
        defer { watch.stop() }
        try await Task.sleep(for: .milliseconds(120))
        clock.advance(awake: 0.05, asleep: 2400)
        var iterator = triggers.makeAsyncIterator()
        let first = await iterator.next()
        #expect(first == .resumed(asleep: 2400))
        #expect(first?.description == "resumed after 40 min asleep")
    }

    @Test func durationsReadNaturally() {
        #expect(PathTrigger.resumed(asleep: 45).description == "resumed after 45 s asleep")
        #expect(PathTrigger.resumed(asleep: 3 * 3600).description == "resumed after 3.0 h asleep")
    }
}

@Suite struct TransportCheckTests {
    @Test func aSlowLinkGetsMoreTimeThanAFastOne() {
        #expect(TransportCheck.timeout(baseline: nil) == 0.3)
        #expect(TransportCheck.timeout(baseline: 0.0004) == 0.3)
        #expect(TransportCheck.timeout(baseline: 0.5) == 1.5)
    }
}
