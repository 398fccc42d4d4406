"""What a user can ask of the messenger, one function per intent, whichever way they ask.

REST routes (`gateway.rest`, `gateway.auth.routes`) and WebSocket frames (`gateway.ws.handlers`)
only translate: they parse what came in, call one of these functions, and render what it returns,
or the one refusal it raises (`Refused`, with the contract's error code) as their protocol says.

    accounts   register, update the profile, read a user
    chats      create a chat, add or remove a member, read a chat the caller is in
    messaging  send, edit, delete a message, mark a chat read

A write goes through `commands.execute`: it takes the write from the user's budget, sends the
command to the topic its type goes to, turns a refusal of the deciding agent into `Refused`, and
returns once the read models hold the change (read-your-writes). The deciding agents
(`streams/`) decide; these functions check only what an agent cannot know (whether a user
exists: the agents hold no user list) or what a command needs before it can be built (the two
members a direct chat's id is derived from).
"""
