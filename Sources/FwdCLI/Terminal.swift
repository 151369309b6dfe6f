import Foundation
import FwdCore

/// Whether output goes to a person. Colour and symbols only on a terminal, and never when NO_COLOR is set
/// (no-color.org) or TERM is dumb; `--json` output never goes through this.
struct Terminal {
    /// The stream is a terminal (needed to redraw in place).
    var isTTY: Bool
    /// Colour and symbols are wanted.
    var styled: Bool
    /// The width to fit, on a terminal only: the terminal's own (TIOCGWINSZ), else `$COLUMNS`, else 80. nil
    /// when the output is not a terminal, where nothing is cut (scripts get it complete and stable).
    var columns: Int?

    init(fd: Int32 = STDOUT_FILENO, environment: [String: String] = ProcessInfo.processInfo.environment) {
        isTTY = isatty(fd) == 1
        styled = isTTY && (environment["NO_COLOR"] ?? "").isEmpty && environment["TERM"] != "dumb"
        if isTTY {
            var size = winsize()
            let asked = ioctl(fd, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 ? Int(size.ws_col) : nil
            columns = asked ?? environment["COLUMNS"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? 80
        }
    }

    /// `text` cut to `width` characters, with "…" where it was cut.
    static func cut(_ text: String, to width: Int) -> String {
        guard text.count > width else { return text }
        return width <= 1 ? String(text.prefix(width)) : String(text.prefix(width - 1)) + "…"
    }

    enum Colour: String {
        case red = "31", green = "32", yellow = "33", dim = "2"
    }

    /// Moves to the top left and clears the screen, for a redraw.
    static let clearScreen = "\u{1b}[H\u{1b}[2J"
    /// For a redraw without flicker: to the top left; clear the rest of a line; clear from here down.
    static let home = "\u{1b}[H"
    static let clearLine = "\u{1b}[K"
    static let clearBelow = "\u{1b}[J"

    func paint(_ text: String, _ colour: Colour?) -> String {
        guard styled, let colour else { return text }
        return "\u{1b}[\(colour.rawValue)m\(text)\u{1b}[0m"
    }

    /// "● up", "◐ degraded", "✗ failed"… on a terminal; the bare state name otherwise.
    func label(_ state: TunnelState) -> String {
        guard styled else { return state.rawValue }
        let symbol: String
        switch state {
        case .up: symbol = "●"
        case .degraded: symbol = "◐"
        case .starting: symbol = "…"
        case .down: symbol = "○"
        case .failed: symbol = "✗"
        case .needsAuth: symbol = "⚿"
        }
        return "\(symbol) \(state.rawValue)"
    }

    static func colour(_ state: TunnelState) -> Colour? {
        switch state {
        case .up: return .green
        case .degraded, .starting: return .yellow
        case .failed: return .red
        case .needsAuth: return .yellow
        case .down: return .dim
        }
    }

    /// The label in its colour (tables pad cells before they colour them, in `Table.render`).
    func state(_ state: TunnelState) -> String {
        paint(label(state), Self.colour(state))
    }
}
