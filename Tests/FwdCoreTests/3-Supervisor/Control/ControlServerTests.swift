import Foundation
import Testing
@testable import FwdCore

/// The control server in this process: replies that outrun a client's reading wait for the socket to drain,
/// again and again, while other clients come and go.
@Suite struct ControlServerTests {
    /// Each streaming client gets `bursts` bursts of `perBurst` replies of 6 KB, more than the socket holds, so
    /// the server's writer is created and removed many times on every connection. Meanwhile other clients connect
    /// and hang up at once, so descriptor numbers are reused under it. Every reply must arrive, whole and in order.
    /// (About 130 writers per run here.) This is the path on which the supervisor once died inside libdispatch
    /// ("Source finalized twice", swift-corelibs-libdispatch#833) under the fault suite's 20 concurrent clients;
    /// this test did not reproduce that crash in 10 runs of the code before the fix, so it guards what the
    /// writer must do, not that libdispatch bug.
    @Test func repliesThatOutrunTheReaderAllArriveWhileOtherClientsComeAndGo() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-ctl-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir, userSSHConfig: dir + "/ssh_config")
        let bursts = 12, perBurst = 50
        let padding = String(repeating: "x", count: 6000)
        let server = try ControlServer(paths: paths) { request, connection in
            guard request.op == .watch else { return connection.finish(.done) }
            for burst in 0..<bursts {
                for i in 0..<perBurst {
                    guard connection.send(.lines(["\(burst * perBurst + i)", padding])) else { return }
                }
                try? await Task.sleep(for: .milliseconds(5))
            }
            connection.finish(.lines(["end"]))
        }
        defer { server.stop() }

        let streams = 12, rounds = 3
        for _ in 0..<rounds {
            // Blocking readers on threads of their own: the server's handlers need Swift's (small) task pool.
            let results = Results()
            let done = DispatchGroup()
            for _ in 0..<streams {
                done.enter()
                Thread.detachNewThread {
                    defer { done.leave() }
                    var seen: [String] = []
                    do {
                        let client = try ControlClient(paths: paths)
                        try client.send(ControlRequest(op: .watch))
                        while let reply = try client.next(timeout: 20) {
                            let lines: [String]? = if case .lines(let l) = reply { l } else { nil }
                            seen.append(lines?.first ?? "?")
                            if lines?.count != 1 && lines?.last != padding { seen.append("a reply cut short") }
                            if seen.count % 10 == 0 { usleep(200) }  // a reader slower than the server
                        }
                    } catch {
                        seen.append("\(error)")
                    }
                    results.add(seen)
                }
            }
            // Clients that hang up before or after asking.
            for i in 0..<60 {
                let client = try ControlClient(paths: paths)
                if i.isMultiple(of: 2) { try? client.send(ControlRequest(op: .ping)) }
                usleep(200)
            }
            await withCheckedContinuation { finished in done.notify(queue: .global()) { finished.resume() } }
            let received = results.all
            let expected = (0..<(bursts * perBurst)).map(String.init) + ["end"]
            #expect(received.count == streams)
            #expect(received.allSatisfy { $0 == expected }, "\(received.map(\.count))")
        }
    }
}

private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var lists: [[String]] = []
    func add(_ list: [String]) { lock.withLock { lists.append(list) } }
    var all: [[String]] { lock.withLock { lists } }
}
