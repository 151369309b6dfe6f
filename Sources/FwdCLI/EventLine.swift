import Foundation
import FwdCore

/// An event as one line: how `fwd logs` prints the log and `fwd run` its tunnels' events as they come.
enum EventLine {
    static let formatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        return f
    }()

    static func print(_ e: Event) {
        Swift.print(text(e))
        fflush(nil)
    }

    static func text(_ e: Event) -> String {
        let subject = e.tunnel ?? e.host ?? "fwd"
        let what: String
        switch e.kind {
        case .state: what = "state \(e.from ?? "?") → \(e.to ?? "?"): \(e.message)"
        // "wanted up": the kind would only repeat it.
        case .desired: what = e.message
        default: what = "\(e.kind): \(e.message)"
        }
        return "\(formatter.string(from: e.time))  \(subject)  \(what)"
    }
}
