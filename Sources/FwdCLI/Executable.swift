import Foundation
import FwdCore

extension SupervisorOptions {
    /// The options from the environment, with this fwd as the masters' askpass (logins that need a person ask at
    /// the terminal of the `fwd up` waiting for them).
    static func withAskpass() -> SupervisorOptions {
        var options = SupervisorOptions.fromEnvironment()
        options.askpass = Executable.path
        options.version = FwdVersion.current
        return options
    }
}

/// The path of this executable, so the supervisor is started from the same binary.
enum Executable {
    static var path: String {
        let link = "/proc/self/exe"
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: link) { return resolved }
        if let path = Bundle.main.executablePath { return path }
        return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }
}
