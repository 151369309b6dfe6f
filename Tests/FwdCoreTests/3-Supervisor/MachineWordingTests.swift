import Foundation
import Testing
@testable import FwdCore

/// The words for what `HostMachine` decided; the machine's tests hold the rest of them in context.
@Suite struct MachineWordingTests {
    @Test func aTakenListenerIsNamedByItsPortOrAsTheLocalSocketAndItsHolderWhenKnown() throws {
        let tcp = try ForwardSpec.parse("8080:wiki.lan:80", kind: .local)
        let socket = ForwardSpec(kind: .local, listen: .unix(path: "/tmp/wiki.sock"), target: .tcp(host: "wiki.lan", port: 80))
        let held = TunnelFailure.localPortTaken(tcp, holder: "pid 7 (nc)")
        #expect(held.error(tunnel: "wiki") == "local port 8080 is already in use (held by pid 7 (nc)): stop that program or change the port in wiki's local forward; fwd takes it once it is free")
        #expect(held.summary == "cannot listen on local port 8080")
        let unix = TunnelFailure.localPortTaken(socket, holder: nil)
        #expect(unix.error(tunnel: "wiki") == "/tmp/wiki.sock is already taken: move it, or change the path in wiki's local forward; fwd takes it once it is free")
        #expect(unix.summary == "cannot listen on /tmp/wiki.sock")
        #expect(TunnelFailure.remoteListenerHeld(evidence: "e", retries: 6).summary == "gave up after 6 retries")
    }

    @Test func aRetriedTunnelSaysThatFwdKeepsTryingWhenAndHowToStopIt() {
        let now = Date(timeIntervalSince1970: 1000)
        #expect(RetryWording.stillTrying("db", attempts: 1, next: now.addingTimeInterval(4.2), now: now)
                == "fwd keeps trying in the background after 1 failed attempt (next try in 4 s); `fwd down db` stops it")
        #expect(RetryWording.stillTrying("db", attempts: 3, next: now.addingTimeInterval(0.46), now: now)
                == "fwd keeps trying in the background after 3 failed attempts (next try in 0.4 s); `fwd down db` stops it")
        #expect(RetryWording.stillTrying("db", attempts: 0, next: nil, now: now)
                == "fwd keeps trying in the background (trying again now); `fwd down db` stops it")
        #expect(RetryWording.nextTry(now.addingTimeInterval(-1), now: now) == nil, "a try under way is not announced")
        #expect(RetryWording.attemptFailed(2, retryIn: 1) == "attempt 2 failed; next try in 1 s")
    }

    @Test func everyLoginQuestionNoTerminalCanAnswerSaysWhatToRunAndIsFatal() {
        for kind in LoginPromptKind.allCases {
            let failure = SSHFailure.noTerminal(for: kind, host: "office", tunnels: ["db", "wiki"])
            #expect(failure.failureClass == .fatal)
            #expect(failure.evidence == "logging in to office needs \(kind.noun) and no terminal is there to ask")
            #expect(failure.advice.hasPrefix("run `fwd up db wiki` on a terminal to "), "\(failure.advice)")
        }
        #expect(SSHFailure.noTerminal(for: .other, host: "office", tunnels: ["wiki"]).advice == "run `fwd up wiki` on a terminal to answer ssh's question")
    }

    @Test func aPublicForwardKeptOnLoopbackNamesTheCauseAndTheFix() {
        let server = Sharing.Gap.serverLoopbackOnly(port: 18750)
        #expect(server.error == "the server keeps port 18750 on its loopback (sshd GatewayPorts no): ask for GatewayPorts clientspecified, or reach it through the server")
        #expect(server.summary == "the forward works on the server's loopback only, not where it is shared")
        let local = Sharing.Gap.localAddressRefused(address: "2001:db8::1", port: 1080)
        #expect(local.error == "[2001:db8::1]:1080 does not accept, though loopback does: a firewall on this machine may block it; check it, or share another address")
    }

    @Test func pathAnswersStartWithTheHost() {
        #expect(PathAnswer.restarted("resumed").line(host: "office") == "office: restarted (resumed)")
        #expect(PathAnswer.waitingForYou(advice: "fix it").line(host: "lab") == "lab: nothing to check (waiting for you: fix it)")
    }
}
