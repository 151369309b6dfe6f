import Foundation
@testable import FwdCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Faults past the SSH server (the target service on B) and faults no retry can fix (keys).
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct ServiceFaultTests {
    @Test func targetDownIsDegradedThenUpWithoutTouchingTheMaster() async throws {
        try await FaultFixture.with { f in
            try f.write(config: f.webTunnel("wiki", port: 18080))
            try #require(try f.fwd("up", "wiki").ok)
            let master = f.masters()
            try #require(master.count == 1)
            let sessions = f.sshd.connections()

            f.stopWeb()
            let stopped = Date()
            let degraded = f.waitForState("wiki", .degraded, timeout: 15)
            #expect(f.status("wiki")?.lastError?.contains("refused") == true || f.status("wiki")?.lastError?.contains("closed") == true,
                    "\(f.status("wiki")?.lastError ?? "")")
            try await Task.sleep(for: .seconds(2))
            #expect(f.state("wiki") == .degraded, "stays degraded while the target is down")
            try f.startWeb()
            let restarted = Date()
            let up = f.waitForState("wiki", .up, timeout: 15)
            print("fwd fault: target on B down — `degraded` after \(degraded.map { String(format: "%.3f", $0) } ?? "never") s; back `up` \(up.map { String(format: "%.3f", $0) } ?? "never") s after it returned (\(String(format: "%.1f", restarted.timeIntervalSince(stopped))) s outage)")
            #expect(degraded != nil)
            #expect(up != nil)
            #expect(f.masters() == master, "the master must not be restarted for a target fault")
            #expect(f.status("wiki")?.restarts == 0)
            #expect(f.sshd.connections() == sessions, "no new SSH connection for a target fault")
            #expect(f.fetch(port: 18080)?.body == f.pageBody)
        }
    }

    /// A wrong key and a changed host key: `failed` with advice, no retry storm, known_hosts untouched.
    /// Watched for a full minute: sshd may see at most 2 connections per case in that time.
    @Test func wrongKeyAndChangedHostKeyFailWithAdviceAndNoRetryStorm() async throws {
        try await FaultFixture.with(sshdPorts: [22, 2222]) { f in
            let wrongKey = f.dir + "/wrong_key"
            try run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrongKey])
            // The host key on record for port 2222 is someone else's.
            let otherHostKey = f.dir + "/other_hostkey"
            try run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherHostKey])
            let otherPub = try String(contentsOfFile: otherHostKey + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
            let changedKnownHosts = f.dir + "/home/.ssh/known_hosts_changed"
            try FileSystem.writeAtomically("[\(Topology.serverName)]:2222 \(otherPub)\n", to: changedKnownHosts)
            try f.write(userSSHConfig: f.hostBlock("badkey", identity: wrongKey) + f.hostBlock("moved", port: 2222, knownHosts: changedKnownHosts))
            try f.write(config: f.webTunnel("a", port: 18081, host: "badkey") + f.webTunnel("b", port: 18082, host: "moved"))
            let knownBefore = try Data(contentsOf: URL(fileURLWithPath: f.sshd.knownHosts))
            let changedBefore = try Data(contentsOf: URL(fileURLWithPath: changedKnownHosts))
            let homeBefore = try FileManager.default.contentsOfDirectory(atPath: f.dir + "/home/.ssh").sorted()

            let started = Date()
            let up = try f.fwd("up", "a", "b", "--timeout", "30")
            let took = Date().timeIntervalSince(started)
            #expect(!up.ok)
            #expect(took < 10, "a fatal failure should end `fwd up` at once, took \(took) s")
            #expect(f.state("a") == .failed && f.state("b") == .failed)
            let aError = f.status("a")?.lastError ?? "", bError = f.status("b")?.lastError ?? ""
            #expect(aError.contains("Permission denied") && aError.contains("check the user and key"), "\(aError)")
            #expect(bError.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || bError.contains("Host key verification failed"), "\(bError)")
            // The advice names the known_hosts entry as ssh does for a non-22 port: [host]:port.
            if bError.contains("IDENTIFICATION HAS CHANGED") {
                #expect(bError.contains("-R \"[sshd-a]:2222\""), "\(bError)")
            } else {
                #expect(bError.contains("check and accept it"), "\(bError)")
            }
            #expect(up.stderr.contains("a: failed") && up.stderr.contains("b: failed"), "\(up.stderr)")
            print("fwd fault: wrong key — `fwd up` failed after \(String(format: "%.2f", took)) s: \(aError)")
            print("fwd fault: changed host key — \(bError)")

            // A minute with nobody asking: nothing may be retried.
            try await Task.sleep(for: .seconds(60 - Date().timeIntervalSince(started)))
            let wrongKeyAttempts = f.sshd.connections(toPort: 22), hostKeyAttempts = f.sshd.connections(toPort: 2222)
            print("fwd fault: fatal failures — sshd saw \(wrongKeyAttempts) connection(s) with the wrong key and \(hostKeyAttempts) to the server whose host key changed in 60 s")
            #expect(wrongKeyAttempts <= 2)
            #expect(hostKeyAttempts <= 2)
            #expect(f.state("a") == .failed && f.state("b") == .failed)
            #expect(f.masters().isEmpty)
            #expect(f.sshProcesses().isEmpty)
            // Host keys are never replaced, added or accepted on a change.
            #expect(try Data(contentsOf: URL(fileURLWithPath: f.sshd.knownHosts)) == knownBefore)
            #expect(try Data(contentsOf: URL(fileURLWithPath: changedKnownHosts)) == changedBefore)
            #expect(try FileManager.default.contentsOfDirectory(atPath: f.dir + "/home/.ssh").sorted() == homeBefore, "no known_hosts.old or new files")
        }
    }
}
