import Foundation

/// A login question as a client's terminal shows it: what ssh asked, in its words.
package struct LoginQuestion: Codable, Sendable, Equatable {
    /// Unique within one supervisor; the answer names it.
    package var id: Int
    package var host: String
    /// Exactly what ssh asked (newlines and trailing space included).
    package var text: String
    package var kind: LoginPromptKind
    /// Show what is typed (ssh's own yes/no questions); a secret is never echoed.
    package var echo: Bool
    /// ssh's messages since the previous question (keyboard-interactive instructions, "Permission denied, please
    /// try again.").
    package var messages: String

    package init(id: Int, host: String, text: String, kind: LoginPromptKind, echo: Bool, messages: String) {
        self.id = id
        self.host = host
        self.text = text
        self.kind = kind
        self.echo = echo
        self.messages = messages
    }
}

/// Routes the login questions of the masters' relays to the terminals waiting for their tunnels, and the answers
/// back to the question they answer. An asker is one `fwd up` (or `fwd run`) on a terminal; a question goes to the
/// newest asker watching a tunnel of the asking host, moves to another when that one goes away, and is refused
/// when nobody can answer. Answers are handed straight to the question's `reply`: nothing here stores them.
package final class LoginBroker: @unchecked Sendable {
    /// What became of a question.
    package enum Outcome: Sendable, Equatable {
        /// It is on a person's terminal now (again, after a move).
        case asked
        case answer(String)
        /// The person cancelled, or went away with nobody else to ask.
        case cancelled
        /// No terminal can be asked.
        case nobody
    }

    private struct Asker {
        var names: Set<String>
        /// Set once its client has its reply; questions for it wait until then.
        var ready: Bool
        var deliver: @Sendable (LoginQuestion) -> Bool
        var withdraw: @Sendable (Int) -> Void
    }

    private struct Open {
        var question: LoginQuestion
        var tunnels: Set<String>
        var asker: Int?
        var reply: @Sendable (Outcome) -> Void
    }

    private let lock = NSLock()
    private var askers: [Int: Asker] = [:]
    private var open: [Int: Open] = [:]
    private var nextAsker = 0
    private var nextQuestion = 0

    package init() {}

    /// A client that can prompt, watching `names`. It gets questions only once `activate`d; `unregister` it when
    /// it goes away. `deliver` returns false when the client is gone.
    package func register(names: Set<String>, deliver: @escaping @Sendable (LoginQuestion) -> Bool,
                         withdraw: @escaping @Sendable (Int) -> Void) -> Int {
        lock.withLock {
            nextAsker += 1
            askers[nextAsker] = Asker(names: names, ready: false, deliver: deliver, withdraw: withdraw)
            return nextAsker
        }
    }

    package func activate(_ asker: Int) {
        let waiting: [Int] = lock.withLock {
            askers[asker]?.ready = true
            return open.filter { $0.value.asker == asker }.map(\.key).sorted()
        }
        for id in waiting { deliver(id) }
    }

    /// The asker went away: its open questions move to another asker, or are cancelled.
    package func unregister(_ asker: Int) {
        let moved: [Int] = lock.withLock {
            askers[asker] = nil
            let ids = open.filter { $0.value.asker == asker }.map(\.key).sorted()
            for id in ids {
                let next = route(open[id]!.tunnels)
                open[id]?.asker = next
            }
            return ids
        }
        for id in moved { deliver(id, orElse: .cancelled) }
    }

    /// Hands `prompt` of `host`'s master to a person watching one of `tunnels`; `reply` hears what became of it.
    /// Returns the question's id (for `withdraw`).
    @discardableResult
    package func ask(_ prompt: LoginPrompt, host: String, tunnels: Set<String>, reply: @escaping @Sendable (Outcome) -> Void) -> Int {
        let id: Int = lock.withLock {
            nextQuestion += 1
            let question = LoginQuestion(id: nextQuestion, host: host, text: prompt.text, kind: prompt.kind, echo: prompt.echo,
                                         messages: prompt.messages)
            open[nextQuestion] = Open(question: question, tunnels: tunnels, asker: route(tunnels), reply: reply)
            return nextQuestion
        }
        deliver(id, orElse: .nobody)
        return id
    }

    /// An answer from `asker` (nil: cancelled). Only the asker the question went to can answer it.
    package func answer(from asker: Int, id: Int, _ answer: String?) {
        let reply: (@Sendable (Outcome) -> Void)? = lock.withLock {
            guard let q = open[id], q.asker == asker else { return nil }
            open[id] = nil
            return q.reply
        }
        reply?(answer.map(Outcome.answer) ?? .cancelled)
    }

    /// The asker could not show the question after all (its terminal went away): ask someone else or refuse it.
    package func unable(from asker: Int, id: Int) {
        let ok: Bool = lock.withLock {
            guard let q = open[id], q.asker == asker else { return false }
            let next = route(q.tunnels, excluding: asker)
            open[id]?.asker = next
            return true
        }
        if ok { deliver(id, orElse: .nobody) }
    }

    /// The question needs no answer any more (its ssh exited): it leaves the terminal it is on.
    package func withdraw(_ id: Int) {
        let withdraw: (@Sendable (Int) -> Void)? = lock.withLock {
            guard let q = open.removeValue(forKey: id), let asker = q.asker else { return nil }
            return askers[asker]?.withdraw
        }
        withdraw?(id)
    }

    /// Questions waiting for an answer.
    package var openQuestions: [Int] { lock.withLock { open.keys.sorted() } }

    /// The newest asker watching one of `tunnels`. Call with the lock held.
    private func route(_ tunnels: Set<String>, excluding: Int? = nil) -> Int? {
        askers.filter { $0.key != excluding && !$0.value.names.isDisjoint(with: tunnels) }.map(\.key).max()
    }

    /// Sends question `id` to its asker if that one is ready; with no asker, ends it with `orElse`.
    private func deliver(_ id: Int, orElse: Outcome = .nobody) {
        while true {
            let step: (question: LoginQuestion, asker: Int, deliver: @Sendable (LoginQuestion) -> Bool)?
            let refused: (@Sendable (Outcome) -> Void)?
            (step, refused) = lock.withLock {
                guard let q = open[id] else { return (nil, nil) }
                guard let asker = q.asker, let a = askers[asker] else {
                    open[id] = nil
                    return (nil, q.reply)
                }
                return (a.ready ? (q.question, asker, a.deliver) : nil, nil)
            }
            if let refused {
                refused(orElse)
                return
            }
            guard let step else { return }  // gone, or waits for its asker to be ready
            if step.deliver(step.question) {
                let reply = lock.withLock { open[id]?.reply }
                reply?(.asked)
                return
            }
            // That client has gone: try the next.
            lock.withLock {
                askers[step.asker] = nil
                if let q = open[id] {
                    let next = route(q.tunnels)
                    open[id]?.asker = next
                }
            }
        }
    }
}
