import ArgumentParser
import Foundation
import FwdCore
import FwdLab

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show fwd working end to end against a private sshd on 127.0.0.1 — no server of your own needed.",
        discussion: """
        Starts an unprivileged sshd on 127.0.0.1 with throwaway keys, a small "intranet wiki" web server behind \
        it and a "laptop" web server, writes a demo config in a temporary directory, runs `fwd up` on a local, \
        a dynamic (SOCKS) and a remote forward, fetches the wiki through the tunnel, shows `fwd status`, and \
        takes everything down. Nothing outside the temporary directory is touched.
        """
    )

    @Flag(help: "Keep the tunnels up until Ctrl-C.")
    var keep = false

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-demo-\(UUID().uuidString.prefix(6))").path
        try FileSystem.makePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        say("fwd demo — everything lives in \(dir) and is removed at the end")

        let sshd = try LabSSHD(dir: dir + "/sshd")
        try sshd.start()
        defer { sshd.stop() }
        let wiki = try TinyHTTPServer(body: "<h1>Intranet wiki</h1><p>Welcome! You reached this page through an SSH tunnel run by fwd.</p>\n")
        defer { wiki.stop() }
        let laptop = try TinyHTTPServer(body: "<h1>laptop dev server</h1>\n")
        defer { laptop.stop() }
        say("started a private sshd on 127.0.0.1:\(sshd.port) (pid \(sshd.pid ?? 0)), the wiki on :\(wiki.port), a laptop web server on :\(laptop.port)")
        say("(on a real network the wiki would sit behind the SSH server; here both are on loopback)")

        let ports = try LocalPort.free(count: 2)
        let (wikiPort, socksPort) = (ports[0], ports[1])
        try FileSystem.writeAtomically("# stands in for your ~/.ssh/config\n" + sshd.clientConfigBlock(alias: "demo-server"), to: dir + "/ssh_config")
        let config = """
        # fwd demo config
        [tunnels.intranet-wiki]
        host = "demo-server"
        local = "\(wikiPort):127.0.0.1:\(wiki.port)"
        probe = "http"

        [tunnels.socks]
        host = "demo-server"
        dynamic = "\(socksPort)"

        [tunnels.laptop-web]
        host = "demo-server"
        remote = "127.0.0.1:0:127.0.0.1:\(laptop.port)"

        [groups]
        demo = ["intranet-wiki", "socks", "laptop-web"]

        """
        try FileSystem.writeAtomically(config, to: dir + "/fwd.toml")
        say("wrote \(dir)/fwd.toml:\n\n" + config.split(separator: "\n", omittingEmptySubsequences: false).map { "    \($0)" }.joined(separator: "\n") + "\n")

        var env = ProcessInfo.processInfo.environment
        env["FWD_CONFIG"] = dir + "/fwd.toml"
        env["FWD_STATE_DIR"] = dir + "/state"
        env["FWD_SSH_CONFIG"] = dir + "/ssh_config"
        let fwd = Executable.path
        defer {
            _ = try? run(fwd, ["down", "--all"], env)
            _ = try? run(fwd, ["daemon", "--stop"], env)
        }

        guard try run(fwd, ["up", "demo"], env) == .exited(0) else {
            throw CommandFailure("`fwd up demo` failed; see above")
        }
        let page = try HTTPGet.fetch(host: "127.0.0.1", port: wikiPort)
        say("GET http://127.0.0.1:\(wikiPort)/ through the tunnel → HTTP \(page.status):\n    \(page.body.trimmingCharacters(in: .whitespacesAndNewlines))")
        _ = try run(fwd, ["check", "demo"], env)
        _ = try run(fwd, ["status"], env)
        if keep {
            say("tunnels stay up: try `curl http://127.0.0.1:\(wikiPort)/` or `curl --socks5-hostname 127.0.0.1:\(socksPort) http://127.0.0.1:\(wiki.port)/`.")
            say("FWD_CONFIG=\(dir)/fwd.toml FWD_STATE_DIR=\(dir)/state FWD_SSH_CONFIG=\(dir)/ssh_config fwd status — Ctrl-C ends the demo.")
            await waitForInterrupt()
        }
        say("taking everything down")
    }

    private func say(_ text: String) {
        print("==> \(text)")
        fflush(nil)
    }

    /// Runs `fwd ARGS` like a user would, its output going to ours.
    private func run(_ fwd: String, _ arguments: [String], _ env: [String: String]) throws -> ChildExit {
        say("$ fwd \(arguments.joined(separator: " "))")
        let child = try ChildProcess([fwd] + arguments, outputPath: ChildProcess.inheritOutput, environment: env)
        return child.waitExit(timeout: 120) ?? .signaled(SIGKILL)
    }

    private func waitForInterrupt() async {
        let (stream, sink) = AsyncStream<Void>.makeStream()
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { sink.yield() }
        source.resume()
        for await _ in stream { break }
        source.cancel()
    }
}
