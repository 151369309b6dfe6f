#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Testing
@testable import FwdCore
import FwdLab

private func makeTempDir() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-lab-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func removeDir(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

/// True once the kernel has no child with this pid (reaped, not a zombie).
private func isReaped(_ pid: Int32) -> Bool {
    var status: Int32 = 0
    return waitpid(pid, &status, WNOHANG) == -1 && errno == ECHILD
}

private func writeClientConfig(_ sshd: LabSSHD, in dir: String) throws -> String {
    let path = dir + "/ssh_config"
    try sshd.clientConfigBlock(alias: "lab").write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Starts `ssh -N -L` through the lab server and waits until the local end serves `target`'s page.
private func openTunnel(config: String, to targetPort: Int, logDir: String) throws -> (ssh: ChildProcess, port: Int, first: HTTPResponse?) {
    let localPort = try LocalPort.free()
    let sshLog = logDir + "/ssh-\(localPort).log"
    let ssh = try ChildProcess(["ssh", "-F", config, "-N", "-o", "ExitOnForwardFailure=yes",
                                "-L", "127.0.0.1:\(localPort):127.0.0.1:\(targetPort)", "lab"],
                               outputPath: sshLog)
    var response: HTTPResponse?
    let deadline = Date().addingTimeInterval(15)
    while response == nil, Date() < deadline, ssh.isRunning {
        response = try? HTTPGet.fetch(host: "127.0.0.1", port: localPort, timeout: 2)
        if response == nil { usleep(100_000) }
    }
    if response == nil {
        let output = (try? String(contentsOfFile: sshLog, encoding: .utf8)) ?? ""
        Issue.record("tunnel never served; ssh output: \(output)")
    }
    return (ssh, localPort, response)
}

@Suite("Lab")
struct LabTests {
    @Test func httpServerServesPageAndCounts() throws {
        let body = "<h1>Intranet wiki</h1><p>héllo</p>"
        let server = try TinyHTTPServer(body: body)
        defer { server.stop() }
        #expect(server.port > 0)
        #expect(server.requestCount == 0)

        let first = try HTTPGet.fetch(host: "127.0.0.1", port: server.port)
        #expect(first.status == 200)
        #expect(first.body == body)
        #expect(server.requestCount == 1)

        let second = try HTTPGet.fetch(host: "localhost", port: server.port, path: "/wiki/Home")
        #expect(second.body == body)
        #expect(server.requestCount == 2)

        // A bare connect is not a request.
        #expect(LocalPort.isAccepting(port: server.port))
        #expect(server.requestCount == 2)

        server.stop()
        server.stop()
        #expect(!LocalPort.isAccepting(port: server.port))
        #expect(throws: LabError.self) { try HTTPGet.fetch(host: "127.0.0.1", port: server.port, timeout: 2) }
    }

    @Test func fetchFromClosedPortThrows() throws {
        let port = try LocalPort.free()
        let start = Date()
        #expect(throws: LabError.self) { try HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: 2) }
        #expect(Date().timeIntervalSince(start) < 1.5)
    }

    @Test func fetchTimesOutOnSilentServer() throws {
        // A listener that never accepts/answers: the connect succeeds (backlog) but no response comes.
        let listening = try TCPListener.listen(host: "127.0.0.1", port: 0, backlog: 4)
        let port = listening.port
        let start = Date()
        #expect(throws: LabError.self) { try HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: 0.5) }
        #expect(Date().timeIntervalSince(start) < 2)
    }

    @Test func sshdLoginAndLocalForward() throws {
        let dir = try makeTempDir()
        defer { removeDir(dir) }
        let sshd = try LabSSHD(dir: dir + "/sshd")
        defer { sshd.stop() }
        try sshd.start()
        #expect(sshd.isRunning)
        #expect(sshd.pid != nil)
        try sshd.start() // idempotent
        let config = try writeClientConfig(sshd, in: dir)

        let (exit, output) = try ChildProcess.run(["ssh", "-F", config, "lab", "true"], timeout: 20)
        #expect(exit == .exited(0), "ssh failed: \(output)\nsshd log:\n\(sshd.log())")
        #expect(sshd.log().contains("Accepted publickey for \(sshd.user)"))

        let body = "<p>only reachable through the tunnel</p>"
        let wiki = try TinyHTTPServer(body: body)
        defer { wiki.stop() }
        let tunnel = try openTunnel(config: config, to: wiki.port, logDir: dir)
        defer { tunnel.ssh.kill() }
        #expect(tunnel.first?.status == 200)
        #expect(tunnel.first?.body == body)
        #expect(wiki.requestCount >= 1)

        // Like a real server restart: the established session outlives the listener when asked to.
        sshd.stop(keepSessions: true)
        #expect(!sshd.isRunning)
        let after = try HTTPGet.fetch(host: "127.0.0.1", port: tunnel.port)
        #expect(after.body == body)

        tunnel.ssh.terminate()
        #expect(tunnel.ssh.waitExit(timeout: 5) != nil)
        #expect(isReaped(tunnel.ssh.pid))
    }

    @Test func stopAndKillDropEstablishedTunnels() throws {
        let dir = try makeTempDir()
        defer { removeDir(dir) }
        let sshd = try LabSSHD(dir: dir + "/sshd")
        defer { sshd.stop() }
        let config = try writeClientConfig(sshd, in: dir)
        let wiki = try TinyHTTPServer(body: "wiki")
        defer { wiki.stop() }

        for crash in [false, true] {
            try sshd.start()
            let tunnel = try openTunnel(config: config, to: wiki.port, logDir: dir)
            defer { tunnel.ssh.kill() }
            #expect(tunnel.first?.body == "wiki")
            if crash { sshd.kill() } else { sshd.stop() }
            // The client notices the dead connection and exits (255), so its forward goes away.
            #expect(tunnel.ssh.waitExit(timeout: 5) == .exited(255), "crash: \(crash)")
            #expect(!LocalPort.isAccepting(port: tunnel.port))
        }
    }

    @Test func sshdStopStartSamePortAndKillLeavesNoZombie() throws {
        let dir = try makeTempDir()
        defer { removeDir(dir) }
        let sshd = try LabSSHD(dir: dir + "/sshd")
        defer { sshd.stop() }
        let config = try writeClientConfig(sshd, in: dir)
        let port = sshd.port

        try sshd.start()
        let firstPid = try #require(sshd.pid)
        sshd.stop()
        sshd.stop()
        #expect(!sshd.isRunning)
        #expect(sshd.pid == nil)
        #expect(isReaped(firstPid))
        #expect(!LocalPort.isAccepting(port: port))

        try sshd.start()
        #expect(sshd.port == port)
        let secondPid = try #require(sshd.pid)
        #expect(secondPid != firstPid)
        let (exit, output) = try ChildProcess.run(["ssh", "-F", config, "lab", "true"], timeout: 20)
        #expect(exit == .exited(0), "ssh after restart failed: \(output)")

        sshd.kill()
        #expect(!sshd.isRunning)
        #expect(isReaped(secondPid))
        #expect(!LocalPort.isAccepting(port: port))

        // Reusing the directory keeps the keys, so known_hosts stays valid.
        let again = try LabSSHD(dir: sshd.dir, port: port)
        defer { again.stop() }
        try again.start()
        let (exit2, output2) = try ChildProcess.run(["ssh", "-F", config, "lab", "true"], timeout: 20)
        #expect(exit2 == .exited(0), "ssh with reused dir failed: \(output2)")
        #expect(again.log().components(separatedBy: "Accepted publickey").count - 1 == 2)
    }

    @Test func invalidExtraConfigIsRejected() throws {
        let dir = try makeTempDir()
        defer { removeDir(dir) }
        do {
            _ = try LabSSHD(dir: dir, extraConfig: ["NoSuchOption yes"])
            Issue.record("expected invalidConfig")
        } catch let error as LabError {
            guard case .invalidConfig = error else { Issue.record("wrong error: \(error)"); return }
            #expect(error.description.contains("NoSuchOption"))
        }
    }

    @Test func startFailsClearlyWhenPortTaken() throws {
        let dir = try makeTempDir()
        defer { removeDir(dir) }
        let squatter = try TinyHTTPServer(body: "not ssh")
        defer { squatter.stop() }
        let sshd = try LabSSHD(dir: dir, port: squatter.port)
        defer { sshd.stop() }
        #expect(throws: LabError.self) { try sshd.start() }
        #expect(!sshd.isRunning)
    }
}
