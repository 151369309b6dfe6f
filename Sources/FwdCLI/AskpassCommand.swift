import ArgumentParser
import Foundation
import FwdCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The program ssh runs for each prompt of a master fwd started (`SSH_ASKPASS`). It hands the prompt to the
/// supervisor's relay at `$FWD_ASKPASS_SOCKET`, waits, and prints the answer for ssh. Nothing else: no config,
/// no database, no logging, and the answer goes to stdout (a pipe to ssh) only.
struct AskpassCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "askpass",
        abstract: "Relay one ssh prompt to the fwd command waiting for it (run by ssh, not by people).",
        shouldDisplay: false
    )

    @Argument(parsing: .captureForPassthrough, help: "The prompt, as ssh passes it.")
    var prompt: [String] = []

    func run() throws {
        let code = Self.relay(prompt: prompt.joined(separator: " "))
        if code != 0 { throw ExitCode(code) }
    }

    /// ssh runs `SSH_ASKPASS PROMPT`: the fwd binary with the prompt as its only argument. That is askpass mode
    /// when fwd's relay socket is in the environment and the argument is not one of fwd's own commands.
    static func promptFromSSH(_ arguments: [String], environment: [String: String]) -> String? {
        guard arguments.count == 2, environment[AskpassClient.socketVariable]?.isEmpty == false else { return nil }
        let commands = Set(FwdCommand.configuration.subcommands.map { $0._commandName })
        return commands.contains(arguments[1]) || arguments[1].hasPrefix("-") ? nil : arguments[1]
    }

    /// 0 with the answer on stdout, 1 on cancel or any failure (ssh then stops asking; the relay's cancel has
    /// already ended that ssh).
    static func relay(prompt: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Int32 {
        guard let socket = environment[AskpassClient.socketVariable], !socket.isEmpty else {
            report("\(AskpassClient.socketVariable) is not set; only ssh started by fwd runs this")
            return 1
        }
        switch AskpassClient.ask(prompt: prompt, hint: environment["SSH_ASKPASS_PROMPT"] ?? "", socketPath: socket) {
        case .success(let answer):
            var bytes = Array(answer.utf8) + [UInt8(ascii: "\n")]
            defer { for i in bytes.indices { bytes[i] = 0 } }
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; return 1 }
                offset += n
            }
            return 0
        case .failure(.cancelled), .failure(.parentExited):
            return 1
        case .failure(.noSocket), .failure(.closed):
            report("the fwd supervisor closed the prompt relay")
            return 1
        case .failure(.connect(let code)):
            report("cannot reach the fwd prompt relay at \(socket): \(String(cString: strerror(code)))")
            return 1
        case .failure(.foreignPeer(let uid)):
            report("the prompt relay at \(socket) belongs to uid \(uid), not to this user; refusing to use it")
            return 1
        }
    }

    /// To stderr, which ssh passes on to the master's log. Never the answer.
    private static func report(_ message: String) {
        FileHandle.standardError.write(Data("fwd askpass: \(message)\n".utf8))
    }
}
