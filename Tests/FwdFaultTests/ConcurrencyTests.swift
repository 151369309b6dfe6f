import Foundation
@testable import FwdCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// 20 processes at a time run random `fwd up` / `fwd down` (seeded) against one supervisor. Afterwards the
/// database must agree with itself and with what runs.
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct ConcurrencyTests {
    struct Op: Sendable {
        var arguments: [String]
        var names: [String]
        var status: ChildExit
        var stderr: String
    }

    final class Log: @unchecked Sendable {
        private let lock = NSLock()
        private var ops: [Op] = []
        func append(_ op: Op) { lock.withLock { ops.append(op) } }
        var all: [Op] { lock.withLock { ops } }
    }

    @Test func twentyConcurrentClientsLeaveAConsistentDatabase() async throws {
        let duration: Double = longTests ? 600 : 60
        let workers = 20
        let seed: UInt64 = UInt64(ProcessInfo.processInfo.environment["FWD_FAULT_SEED"] ?? "") ?? 20_251_127
        try await FaultFixture.with(sshdPorts: [22, 2222]) { f in
            // Two hosts (two masters) so masters start and stop as their last tunnel goes.
            try f.write(userSSHConfig: f.hostBlock("lab") + f.hostBlock("lab2", port: 2222))
            let names = (0..<10).map { "t\($0)" }
            let port = { (name: String) in 18100 + Int(name.dropFirst())! }
            try f.write(config: names.map { f.webTunnel($0, port: port($0), host: Int($0.dropFirst())! < 6 ? "lab" : "lab2") }.joined())
            try #require(try f.fwd("up", "t0").ok)

            print("fwd fault: concurrency — \(workers) clients for \(Int(duration)) s, seed \(seed)")
            // Rounds: the 20 clients start together, each runs one random command that returns quickly (so the
            // requests overlap), and once all have returned the supervisor must settle on what the database asks for. A check after every round catches a stale
            // request applied last, which a single check at the end would see only if it hit the final round.
            let log = Log()
            let store = try f.store()
            let began = Date()
            var rounds = 0, unsettled: [String] = [], slowestSettle = 0.0
            var rng = SeededRandom(seed: seed)
            while Date().timeIntervalSince(began) < duration {
                rounds += 1
                let done = DispatchGroup()
                for _ in 0..<workers {
                    let workerSeed = rng.next()
                    done.enter()
                    Thread.detachNewThread {
                        defer { done.leave() }
                        var own = SeededRandom(seed: workerSeed)
                        do {
                            let picked = Array(Set((0..<own.int(1...2)).map { _ in own.pick(names) })).sorted()
                            let arguments: [String]
                            switch own.int(0...99) {
                            case 0..<47: arguments = ["up", "-q", "--timeout", "0.2"] + picked
                            case 47..<94: arguments = ["down", "--timeout", "0.2"] + picked
                            case 94..<99: arguments = ["status", "--json"]
                            default: arguments = ["down", "--all", "--timeout", "0.2"]
                            }
                            guard let run = try? f.fwd(arguments: arguments, timeout: 60) else {
                                log.append(Op(arguments: arguments, names: picked, status: .signaled(9), stderr: "did not finish in 60 s"))
                                return
                            }
                            log.append(Op(arguments: arguments, names: arguments.first == "status" ? [] : picked,
                                          status: run.status, stderr: run.stderr))
                        }
                    }
                }
                done.wait()
                var rows: [TunnelStatus] = []
                let settled = f.waitUntil(timeout: 20) {
                    rows = (try? store.tunnels()) ?? []
                    return rows.allSatisfy { $0.desired == .up ? $0.state == .up : $0.state == .down }
                }
                if let settled {
                    slowestSettle = max(slowestSettle, settled)
                    // One master per host with a wanted tunnel (a master being stopped may take a moment), no orphans.
                    let hosts = Set(rows.filter { $0.desired == .up }.map(\.host))
                    if f.waitUntil(timeout: 10, { f.masters().count == hosts.count && f.orphanedSSH().isEmpty }) == nil {
                        unsettled.append("round \(rounds): \(f.masters().count) masters for \(hosts.count) host(s), orphans \(f.orphanedSSH())")
                    }
                } else {
                    unsettled.append("round \(rounds): " + rows.filter { ($0.desired == .up) != ($0.state == .up) || ($0.desired == .down && $0.state != .down) }
                        .map { "\($0.name) wanted \($0.desired.rawValue), is \($0.state.rawValue) \($0.lastError ?? "")" }.joined(separator: "; "))
                }
            }
            #expect(unsettled.isEmpty, "\(unsettled.count) of \(rounds) rounds did not settle: \(unsettled.prefix(3))")
            let ops = log.all
            let hung = ops.filter { $0.stderr == "did not finish in 60 s" }
            #expect(hung.isEmpty, "\(hung.count) fwd runs hung")
            let crashed = ops.filter { if case .signaled = $0.status { return true } else { return false } }
            #expect(crashed.isEmpty, "\(crashed.map { "\($0.arguments): \($0.stderr)" }.prefix(3))")
            // Non-zero exits are allowed only for the reasons a racing client explains: a timeout while another
            // client took the tunnel down again, or a failure that names the tunnel.
            let unexplained = ops.filter { !$0.status.isSuccess && !$0.stderr.contains("timed out") && !$0.stderr.contains(": failed") }
            #expect(unexplained.isEmpty, "\(unexplained.map { "\($0.arguments): \($0.stderr)" }.prefix(5))")

            let rows = try store.tunnels()
            let summary = rows.map { "\($0.name):\($0.desired.rawValue)/\($0.state.rawValue)" }.joined(separator: " ")
            print("fwd fault: concurrency — \(rounds) rounds, \(ops.count) fwd runs (\(ops.filter { $0.status.isSuccess }.count) exit 0); \(rounds - unsettled.count) of \(rounds) rounds settled (slowest \(String(format: "%.1f", slowestSettle)) s); final: \(summary)")

            for row in rows {
                let accepting = f.isAccepting(port: port(row.name))
                if row.desired == .up {
                    #expect(accepting && f.fetch(port: port(row.name))?.body == f.pageBody, "\(row.name) is wanted up but its page does not load")
                } else {
                    #expect(!accepting, "\(row.name) is down but something listens on \(port(row.name))")
                }
            }

            // Processes: one supervisor; one master per host with a wanted tunnel; no other ssh; nothing orphaned.
            let hostsWanted = Set(rows.filter { $0.desired == .up }.map(\.host))
            #expect(f.supervisorProcesses().count == 1)
            let errors = f.events(kind: .error)
            #expect(errors.isEmpty, "the supervisor logged errors: \(Set(errors.map(\.message)).prefix(3))")
            let mastersSettled = f.waitUntil(timeout: 10) { f.masters().count == hostsWanted.count && f.sshProcesses().count == hostsWanted.count }
            #expect(mastersSettled != nil, "masters \(f.masters().count) for \(hostsWanted.count) host(s); ssh \(f.sshProcesses().count)")
            #expect(f.orphanedSSH().isEmpty)
            if let daemon = f.supervisorProcesses().first { #expect(f.zombies(of: daemon).isEmpty) }
            let recorded = try store.masters()
            #expect(Set(recorded.map(\.host)) == hostsWanted, "master records \(recorded.map(\.host)) for \(hostsWanted)")
            #expect(Set(recorded.map { Int32($0.pid) }) == Set(f.masters()))

            // The event log: every tunnel's desired and state events chain (each starts where the last ended)
            // and end in the row's values; no transition is missing.
            var stateEvents = 0, desiredEvents = 0
            for row in rows {
                let states = f.events(row.name, kind: .state)
                let desired = f.events(row.name, kind: .desired)
                stateEvents += states.count
                desiredEvents += desired.count
                #expect(states.first?.from == TunnelState.down.rawValue, "\(row.name): first state event from \(states.first?.from ?? "nil")")
                for (a, b) in zip(states, states.dropFirst()) where a.to != b.from {
                    Issue.record("\(row.name): state event \(b.id) starts at \(b.from ?? "nil") but the previous ended at \(a.to ?? "nil")")
                }
                for b in states where b.from == b.to {
                    Issue.record("\(row.name): state event \(b.id) is no change (\(b.from ?? ""))")
                }
                #expect(states.last?.to == row.state.rawValue, "\(row.name): last state event \(states.last?.to ?? "nil"), row \(row.state)")
                #expect(desired.first?.from == nil)
                for (a, b) in zip(desired, desired.dropFirst()) where a.to != b.from {
                    Issue.record("\(row.name): desired event \(b.id) starts at \(b.from ?? "nil") but the previous ended at \(a.to ?? "nil")")
                }
                #expect(desired.last?.to == row.desired.rawValue)
                // Each successful up/down naming the tunnel recorded one desired event; failed ones may have too.
                let naming = ops.filter { ["up", "down"].contains($0.arguments[0]) && $0.names.contains(row.name) && !$0.arguments.contains("--all") }
                let all = ops.filter { $0.arguments.contains("--all") }
                let least = naming.filter { $0.status.isSuccess }.count
                let most = naming.count + all.count + (row.name == "t0" ? 1 : 0)
                #expect((least...most).contains(desired.count), "\(row.name): \(desired.count) desired events for \(least)…\(most) requests")
                #expect(f.events(row.name, kind: .restart).count == row.restarts)
            }
            print("fwd fault: concurrency — event log holds \(stateEvents) state and \(desiredEvents) desired events; every chain is unbroken")
        }
    }
}

extension ChildExit {
    var isSuccess: Bool { self == .exited(0) }
}
