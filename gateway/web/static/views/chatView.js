/**
 * The open chat: its header, history (scrolling to the top loads older pages), the composer
 * (Enter sends, Shift+Enter a new line; editing with Enter to save and Escape to cancel), and
 * who is typing. On a phone the list and the chat take turns (`#layout[data-view]`).
 * @module views/chatView
 */
import { byId, setText } from '../dom.js';
import { renderMembers } from './members.js';
import { renderMessages } from './messages.js';

const TYPING_EVERY_MS = 3000;
const MAX_TEXT = 4000;
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 40;
const SETTLE_MS = 250;

/**
 * @param {object} deps
 * @param {import('../store.js').Store} deps.store
 * @param {(text: string) => void} deps.send
 * @param {(message: object, text: string) => boolean} deps.edit true when the edit went out
 * @param {(message: object) => void} deps.remove
 * @param {(message: object) => void} deps.discard
 * @param {() => void} deps.typing
 * @param {() => Promise<void>} deps.loadOlder
 * @param {(userId: string) => void} deps.removeMember
 * @param {() => void} deps.back
 * @param {(text: string) => void} deps.say
 */
export function bindChatView(deps) {
  const { store } = deps;
  const connectionState = () => byId('connection').dataset.state;
  const layout = byId('layout');
  const scroller = byId('message-scroller');
  const composer = /** @type {HTMLFormElement} */ (byId('composer'));
  const input = /** @type {HTMLTextAreaElement} */ (byId('message-input'));
  const sendButton = /** @type {HTMLButtonElement} */ (byId('send'));
  const cancelEdit = byId('cancel-edit');
  const olderButton = /** @type {HTMLButtonElement} */ (byId('load-older'));
  /** @type {object|null} */
  let editing = null;
  let draft = '';
  let lastTyping = 0;
  let shownChat = '';
  let loadingOlder = false;

  const actions = { edit: startEdit, remove: deps.remove, discard: deps.discard };

  function startEdit(message) {
    if (!editing) draft = input.value;
    editing = message;
    input.value = message.text;
    composer.dataset.mode = 'edit';
    setText(sendButton, 'Save');
    cancelEdit.hidden = false;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }

  function stopEdit() {
    if (!editing) return;
    editing = null;
    input.value = draft;
    composer.dataset.mode = 'send';
    setText(sendButton, 'Send');
    cancelEdit.hidden = true;
  }

  function submit() {
    const text = input.value;
    if (!text.trim()) return;
    const length = [...text].length;
    if (length > MAX_TEXT) {
      deps.say(`A message is at most 4,000 characters; this one has ${length.toLocaleString('en')}.`);
      return;
    }
    if (editing) {
      if (text !== editing.text && !deps.edit(editing, text)) return;
      stopEdit();
      input.focus();
      return;
    }
    deps.send(text);
    input.value = '';
    lastTyping = 0;
    scroller.scrollTop = scroller.scrollHeight;
  }

  composer.addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === 'Escape' && editing) {
      event.preventDefault();
      stopEdit();
    }
  });
  input.addEventListener('input', () => {
    if (editing || !input.value || Date.now() - lastTyping < TYPING_EVERY_MS) return;
    lastTyping = Date.now();
    deps.typing();
  });
  cancelEdit.addEventListener('click', () => { stopEdit(); input.focus(); });
  byId('back').addEventListener('click', deps.back);

  async function older() {
    const chat = store.openChat();
    if (!chat || !chat.hasOlder || loadingOlder) return;
    loadingOlder = true;
    olderButton.disabled = true;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    try {
      await deps.loadOlder();
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
    } finally {
      loadingOlder = false;
      olderButton.disabled = false;
    }
  }
  olderButton.addEventListener('click', older);
  // Reaching the top loads the older page once the scroll has settled there (a click on the
  // button, which scrolls it into view first, is not raced by a second load).
  let settle = 0;
  scroller.addEventListener('scroll', () => {
    clearTimeout(settle);
    if (scroller.scrollTop < NEAR_TOP_PX) {
      settle = setTimeout(() => { if (scroller.scrollTop < NEAR_TOP_PX) older(); }, SETTLE_MS);
    }
  });

  function typingLine(chat) {
    const names = [...chat.typing.keys()].map((id) => store.nameOf(id));
    if (names.length === 0) return '';
    if (names.length === 1) return `${names[0]} is typing…`;
    return `${names.slice(0, -1).join(', ')} and ${names.at(-1)} are typing…`;
  }

  function subtitle(chat) {
    if (chat.removed) return '';
    if (chat.type === 'group') return chat.members.size === 1 ? '1 member' : `${chat.members.size} members`;
    const partner = store.partnerOf(chat);
    if (connectionState() !== 'online') return '';
    return partner && store.online.has(partner) ? 'Online' : 'Offline';
  }

  /** Redraws the open chat (or the empty state) from the store. */
  function render() {
    const chat = store.openChat();
    layout.dataset.view = chat ? 'chat' : 'list';
    byId('chat').hidden = !chat;
    byId('no-chat-open').hidden = Boolean(chat);
    if (!chat) {
      shownChat = '';
      stopEdit();
      return;
    }
    const switched = shownChat !== chat.id;
    if (switched) {
      stopEdit();
      input.value = '';
      byId('chat').dataset.chatId = chat.id;
    }
    setText(byId('chat-title'), store.titleOf(chat));
    setText(byId('chat-subtitle'), subtitle(chat));
    const state = byId('chat-state');
    state.hidden = !chat.removed;
    setText(state, chat.removed ? 'You are not a member of this chat any more.' : '');
    input.disabled = chat.removed;
    sendButton.disabled = chat.removed;
    byId('members-button').hidden = chat.removed;
    if (chat.removed) byId('members').hidden = true;
    olderButton.hidden = !chat.hasOlder;
    if (editing && (editing.chat_id !== chat.id || chat.messages.get(editing.seq)?.deleted)) stopEdit();

    const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
    renderMessages(store, chat, actions, render);
    if (switched || atBottom) scroller.scrollTop = scroller.scrollHeight;
    shownChat = chat.id;

    setText(byId('typing'), typingLine(chat));
    renderMembers(store, chat, deps.removeMember);
  }

  return {
    render,
    /** Puts the focus in the composer once the chat opened is drawn (drawing is queued the same way). */
    focusComposer: () => setTimeout(() => { if (!input.disabled) input.focus(); }, 0),
    /** Whether the history is scrolled to its end (new messages are being seen). */
    atBottom: () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX,
  };
}
