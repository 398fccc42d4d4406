/**
 * What each server frame changes in the store (docs/contract.md, "Server to client").
 * Frames about a chat the client does not know yet (a chat created while the list loads) make it
 * fetch that chat; names of unknown users are fetched by the caller's `needUser`.
 * @module frames
 */

/**
 * @typedef {object} FrameContext
 * @property {import('./store.js').Store} store
 * @property {import('./outbox.js').Outbox} outbox
 * @property {(chatId: string) => void} needChat fetch a chat the client does not hold
 * @property {(userId: string) => void} needUser fetch a user's name
 * @property {(chatId: string, lastSeq: number) => void} syncDone a `sync` finished
 * @property {(chatId: string) => void} resync fetch what was missed (added back to a chat)
 * @property {(frame: object) => void} problem an error frame not about a pending send
 */

/**
 * Applies one frame.
 * @param {object} frame
 * @param {FrameContext} ctx
 */
export function applyFrame(frame, ctx) {
  const { store } = ctx;
  const known = (chatId) => {
    if (store.chats.has(chatId)) return true;
    ctx.needChat(chatId);
    return false;
  };
  switch (frame.type) {
    case 'message.new':
      if (known(frame.message.chat_id)) {
        ctx.needUser(frame.message.sender_id);
        store.putMessages(frame.message.chat_id, [frame.message], { live: true });
      }
      break;
    case 'message.edited':
      store.putEdit(frame.message);
      break;
    case 'message.ack':
      store.putMessages(frame.message.chat_id, [frame.message], { live: true });
      break;
    case 'message.deleted':
      store.markDeleted(frame.chat_id, frame.seq, frame.message_id);
      break;
    case 'read':
      store.setRead(frame.chat_id, frame.user_id, frame.seq);
      break;
    case 'typing':
      ctx.needUser(frame.user_id);
      store.setTyping(frame.chat_id, frame.user_id);
      break;
    case 'presence':
      store.setOnline(frame.user_id, frame.online);
      break;
    case 'chat.updated': {
      const wasOut = store.chats.get(frame.chat.id)?.removed ?? false;
      store.upsertChat(frame.chat);
      frame.chat.members.forEach((m) => ctx.needUser(m.user_id));
      if (wasOut) ctx.resync(frame.chat.id);
      break;
    }
    case 'chat.member_added':
      if (known(frame.chat_id)) {
        ctx.needUser(frame.user_id);
        store.setMember(frame.chat_id, frame.user_id, frame.role);
      }
      break;
    case 'chat.member_removed':
      store.removeMember(frame.chat_id, frame.user_id);
      break;
    case 'sync.done':
      ctx.syncDone(frame.chat_id, frame.last_seq);
      break;
    case 'error':
      if (!ctx.outbox.refused(frame)) ctx.problem(frame);
      break;
    default:
      break;
  }
}
