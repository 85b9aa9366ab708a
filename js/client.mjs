// Drive ElevenLabs' official JavaScript client (@elevenlabs/client, pinned in package.json)
// through one scripted conversation and print what it saw, one JSON object per line.
//
//   node js/client.mjs '<scenario JSON>'
//
// Scenario: {mode: "text"|"voice", origin: "ws://127.0.0.1:PORT", agentId | signedUrl,
//            dynamicVariables?, overrides?, timeoutMs?, tools?, steps: [...]}
// tools (text mode): {name: {result?, error?, delayMs?}} registered as the client's clientTools;
// each call is printed as {event: "client_tool", name, parameters}.
// Steps, run in order:
//   {wait: "agent", count: n}   until n agent messages have arrived in total
//   {wait: "user", count: n}    until n user transcripts have arrived (voice)
//   {wait: "disconnect"}        until the session ends
//   {say: "text"}               sendUserMessage          {context: "text"}  sendContextualUpdate
//   {activity: true}            sendUserActivity         {feedback: true|false}  sendFeedback
//   {end: true}                 endSession               {sleep: ms}
//   {pcm: "<base64 PCM s16le 16 kHz>"} (voice) stream it as 250 ms user_audio_chunks in real time
//   {silenceMs: n}              (voice) stream n ms of silent frames
// Text mode uses Conversation.startSession (the client's own TextConversation). Voice mode uses
// the client's exported WebSocketConnection: Node has no microphone or AudioContext, so this
// script is the audio device, sending and receiving PCM through the client's connection.
import WebSocket from "ws";
import { Conversation, WebSocketConnection } from "@elevenlabs/client";

globalThis.WebSocket ??= WebSocket;

const scenario = JSON.parse(process.argv[2]);
const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
const seen = { agent: 0, user: 0, disconnected: false, audioBytes: 0 };
const waiters = [];
const notify = () => waiters.splice(0).forEach(w => w());
const until = (test, what, ms = scenario.stepTimeoutMs ?? 15000) => new Promise((resolve, reject) => {
  const started = Date.now();
  const check = () => {
    if (test()) return resolve();
    if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
    waiters.push(check);
    setTimeout(notify, 50);
  };
  check();
});
const sleep = ms => new Promise(r => setTimeout(r, ms));
const CHUNK_BYTES = 8000; // 250 ms of 16 kHz s16le, what the browser client sends

const common = {
  origin: scenario.origin,
  connectionType: "websocket",
  ...(scenario.signedUrl ? { signedUrl: scenario.signedUrl } : { agentId: scenario.agentId }),
  ...(scenario.dynamicVariables ? { dynamicVariables: scenario.dynamicVariables } : {}),
  ...(scenario.overrides ? { overrides: scenario.overrides } : {}),
};

function onMessage(message) {
  if (message.role === "agent") seen.agent += 1; else seen.user += 1;
  emit("message", { role: message.role, message: message.message, event_id: message.event_id });
  notify();
}
function onDisconnect(details) {
  seen.disconnected = true;
  emit("disconnect", { reason: details.reason, message: details.message ?? null,
                       closeCode: details.closeCode ?? null, closeReason: details.closeReason ?? null,
                       context: details.context ?? null });
  notify();
}

function clientTools() {
  const tools = {};
  for (const [name, answer] of Object.entries(scenario.tools ?? {})) {
    tools[name] = async parameters => {
      emit("client_tool", { name, parameters });
      if (answer.delayMs) await sleep(answer.delayMs);
      if (answer.error) throw new Error(answer.error);
      return answer.result;
    };
  }
  return tools;
}

async function textSession() {
  const conversation = await Conversation.startSession({
    ...common, textOnly: true, clientTools: clientTools(),
    onAgentToolRequest: r => emit("agent_tool_request", { tool_name: r.tool_name, tool_type: r.tool_type }),
    onConnect: ({ conversationId }) => emit("connect", { conversationId }),
    onMessage, onDisconnect,
    onError: (message, context) => emit("onError", { message, context: context ?? null }),
    onAgentToolResponse: r => emit("agent_tool_response", { tool_name: r.tool_name, tool_type: r.tool_type,
                                                            is_error: r.is_error }),
    onAgentChatResponsePart: p => emit("chat_part", { type: p.type, text: p.text }),
    onPing: p => emit("ping", { event_id: p.event_id }),
  });
  return {
    say: text => conversation.sendUserMessage(text),
    context: text => conversation.sendContextualUpdate(text),
    activity: () => conversation.sendUserActivity(),
    feedback: like => conversation.sendFeedback(like),
    end: () => conversation.endSession(),
    id: conversation.getId(),
  };
}

// Voice mode speaks through the bare connection, so it answers client tools as the client's
// Conversation does: the registered tool's result (objects as JSON text), or its error.
async function answerTool(connection, call) {
  const tool = clientTools()[call.tool_name];
  let result, isError = false;
  if (!tool) { result = `Client tool with name ${call.tool_name} is not defined on client`; isError = true; }
  else {
    try { const r = (await tool(call.parameters)) ?? "Client tool execution successful.";
          result = typeof r === "object" ? JSON.stringify(r) : String(r); }
    catch (e) { result = `Client tool execution failed: ${e?.message}`; isError = true; }
  }
  connection.sendMessage({ type: "client_tool_result", tool_call_id: call.tool_call_id, result, is_error: isError });
}

async function voiceSession() {
  const connection = await WebSocketConnection.create({ ...common, textOnly: false,
                                                        overrides: { conversation: { textOnly: false } } });
  emit("connect", { conversationId: connection.conversationId,
                    inputFormat: connection.inputFormat, outputFormat: connection.outputFormat });
  connection.onMessage(event => {
    if (event.type === "ping") connection.sendMessage({ type: "pong", event_id: event.ping_event.event_id });
    else if (event.type === "agent_response") onMessage({ role: "agent", message: event.agent_response_event.agent_response,
                                                          event_id: event.agent_response_event.event_id });
    else if (event.type === "user_transcript") onMessage({ role: "user",
                                                           message: event.user_transcription_event.user_transcript,
                                                           event_id: event.user_transcription_event.event_id });
    else if (event.type === "interruption") emit("interruption", { event_id: event.interruption_event.event_id });
    else if (event.type === "vad_score") emit("vad_score", { score: event.vad_score_event.vad_score });
    else if (event.type === "tentative_user_transcript") emit("tentative_user_transcript", {
      message: event.tentative_user_transcription_event.user_transcript,
      event_id: event.tentative_user_transcription_event.event_id });
    else if (event.type === "agent_tool_response") emit("agent_tool_response", { tool_name: event.agent_tool_response.tool_name });
    else if (event.type === "client_tool_call") answerTool(connection, event.client_tool_call);
  });
  connection.addListener(audio => { seen.audioBytes += Buffer.from(audio.audio_base_64, "base64").length; });
  connection.onDisconnect(onDisconnect);
  const stream = async pcm => {
    for (let offset = 0; offset < pcm.length && !seen.disconnected; offset += CHUNK_BYTES) {
      connection.sendMessage({ user_audio_chunk: pcm.subarray(offset, offset + CHUNK_BYTES).toString("base64") });
      await sleep(250);
    }
  };
  return {
    pcm: b64 => stream(Buffer.from(b64, "base64")),
    silence: ms => stream(Buffer.alloc(Math.round(ms * 32) - (Math.round(ms * 32) % 2))),
    end: () => connection.close(),
    id: connection.conversationId,
  };
}

async function main() {
  const timer = setTimeout(() => { emit("fatal", { message: "scenario timed out" }); process.exit(3); },
                           scenario.timeoutMs ?? 60000);
  let session;
  try {
    session = scenario.mode === "voice" ? await voiceSession() : await textSession();
  } catch (error) {
    emit("start_failed", { name: error.name, message: error.message,
                           closeCode: error.closeCode ?? null, closeReason: error.closeReason ?? null });
    clearTimeout(timer);
    return;
  }
  for (const step of scenario.steps ?? []) {
    if (step.wait === "agent") await until(() => seen.agent >= step.count, `${step.count} agent messages`);
    else if (step.wait === "user") await until(() => seen.user >= step.count, `${step.count} user transcripts`);
    else if (step.wait === "disconnect") await until(() => seen.disconnected, "the disconnect");
    else if ("say" in step) session.say(step.say);
    else if ("context" in step) session.context(step.context);
    else if ("activity" in step) session.activity();
    else if ("feedback" in step) session.feedback(step.feedback);
    else if ("end" in step) await session.end();
    else if ("sleep" in step) await sleep(step.sleep);
    else if ("pcm" in step) await session.pcm(step.pcm);
    else if ("silenceMs" in step) await session.silence(step.silenceMs);
    else throw new Error(`unknown step ${JSON.stringify(step)}`);
    emit("step_done", { step: Object.keys(step)[0] });
  }
  emit("summary", { agentMessages: seen.agent, userMessages: seen.user, audioBytes: seen.audioBytes,
                    conversationId: session.id, disconnected: seen.disconnected });
  clearTimeout(timer);
  if (!seen.disconnected) await session.end();
  await sleep(100);
  process.exit(0);
}

main().catch(error => { emit("fatal", { message: String(error?.message ?? error) }); process.exit(4); });
