import Dispatch
import Foundation

/// Shows login questions on this process's terminal, one at a time (a second waits for the first), off the
/// caller's thread so it keeps reading its connection; a question can be withdrawn while shown or waiting.
/// `answered` hears each outcome; the answer is handed over and not kept.
package final class PromptDesk: @unchecked Sendable {
    private let prompter: TerminalPrompter
    private let answered: @Sendable (LoginQuestion, TerminalPrompter.Outcome) -> Void
    private let queue = DispatchQueue(label: "fwd.prompt-desk")
    private let lock = NSLock()
    private var current: (id: Int, interrupt: PromptInterrupt)?
    private var withdrawn: Set<Int> = []
    private var waiting = 0

    package init(prompter: TerminalPrompter = TerminalPrompter(),
                answered: @escaping @Sendable (LoginQuestion, TerminalPrompter.Outcome) -> Void) {
        self.prompter = prompter
        self.answered = answered
    }

    /// Whether a question is shown or waits to be.
    package var isAsking: Bool { lock.withLock { waiting > 0 } }

    package func show(_ question: LoginQuestion) {
        lock.withLock { waiting += 1 }
        queue.async { [self] in
            let interrupt = PromptInterrupt()
            let skip: Bool = lock.withLock {
                if withdrawn.remove(question.id) != nil { return true }
                current = (question.id, interrupt)
                return false
            }
            let outcome = skip ? .withdrawn : prompter.ask(question.text, messages: question.messages, echo: question.echo, interrupt: interrupt)
            lock.withLock { current = nil }
            if !skip { answered(question, outcome) }
            lock.withLock { waiting -= 1 }
        }
    }

    package func withdraw(_ id: Int) {
        lock.withLock {
            if let current, current.id == id { current.interrupt.interrupt() } else { withdrawn.insert(id) }
        }
    }
}
