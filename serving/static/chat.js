// The chat page: pick a twin, ask, read the answer as it streams from POST /v1/rag (SSE), with sources.
const twinSelect = document.getElementById("twin");
const keyInput = document.getElementById("api-key");
const statusLine = document.getElementById("status");
const log = document.getElementById("log");

keyInput.value = localStorage.getItem("twin-api-key") || "";
keyInput.addEventListener("change", () => { localStorage.setItem("twin-api-key", keyInput.value); loadTwins(); });

function headers() {
  const result = { "Content-Type": "application/json" };
  if (keyInput.value) result["Authorization"] = "Bearer " + keyInput.value;
  return result;
}

async function loadTwins() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (!response.ok) { statusLine.textContent = await errorText(response); return; }
  statusLine.textContent = "";
  const chosen = twinSelect.value;
  twinSelect.querySelectorAll("option[value]:not([value=''])").forEach((option) => option.remove());
  for (const model of (await response.json()).data) {
    const option = document.createElement("option");
    option.value = model.id;
    option.textContent = model.name || model.id;
    twinSelect.appendChild(option);
  }
  twinSelect.value = chosen;
}

async function errorText(response) {
  try { return (await response.json()).error.message; } catch { return "HTTP " + response.status; }
}

function addTurn(question) {
  const turn = document.createElement("section");
  turn.className = "turn";
  const q = document.createElement("div"); q.className = "question"; q.textContent = question;
  const w = document.createElement("div"); w.className = "who";
  const a = document.createElement("div"); a.className = "answer";
  const s = document.createElement("ol"); s.className = "sources";
  turn.append(q, w, a, s);
  log.prepend(turn);
  return { who: w, answer: a, sources: s, turn };
}

function safeHttpUrl(url) {
  try {
    const parsed = new URL(String(url));
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch (error) { return null; }
}

function showSources(list, sources) {
  list.replaceChildren();
  for (const source of sources) {
    const item = document.createElement("li");
    item.value = source.number;
    // Only http(s) sources become links: a javascript: or data: URL stays inert text.
    const safe = safeHttpUrl(source.url);
    const link = document.createElement(safe ? "a" : "span");
    if (safe) { link.href = safe; link.target = "_blank"; link.rel = "noopener noreferrer"; }
    link.textContent = source.title || source.url;
    const meta = document.createElement("span"); meta.className = "meta";
    meta.textContent = ` - ${source.author}, ${source.category} (similarity ${source.similarity.toFixed(3)})`;
    const snippet = document.createElement("div"); snippet.className = "snippet"; snippet.textContent = source.snippet;
    item.append(link, meta, snippet);
    list.appendChild(item);
  }
}

// The final answer replaces the streamed tokens: ended at a sentence, with an inline [n] on each
// sentence a source supports, and the share of supported sentences underneath.
function showAnswer(view, message) {
  view.answer.textContent = message.answer;
  if (!message.citations) return;
  const line = document.createElement("div"); line.className = "grounding";
  const sentences = message.citations.sentences;
  const supported = sentences.filter((sentence) => sentence.supported).length;
  line.textContent = `${supported} of ${sentences.length} sentences supported by a cited source ` +
    `(grounding ${Math.round(message.citations.grounding * 100)}%)`;
  view.answer.after(line);
}

document.getElementById("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = document.getElementById("question").value.trim();
  if (!question) return;
  const button = document.getElementById("send");
  button.disabled = true; statusLine.textContent = "";
  const view = addTurn(question);
  view.turn.dataset.state = "streaming";
  try {
    const body = { query: question, stream: true };
    if (twinSelect.value) body.twin = twinSelect.value;
    const response = await fetch("/v1/rag", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) throw new Error(await errorText(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim(); buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const message = JSON.parse(line.slice(5));
        if (message.type === "sources") {
          // Who answers: the twin and its model version, or why it is the base model.
          view.who.textContent = "Answered by " + message.answered_by;
          view.turn.dataset.twin = message.twin || "";
          view.turn.dataset.modelVersion = message.model_version || "";
          showSources(view.sources, message.sources);
        }
        else if (message.type === "token") view.answer.textContent += message.text;
        else if (message.type === "done") showAnswer(view, message);
        else if (message.type === "error") throw new Error(message.message);
      }
    }
    view.turn.dataset.state = "done";
  } catch (error) {
    view.turn.dataset.state = "error";
    statusLine.textContent = String(error.message || error);
  } finally {
    button.disabled = false;
  }
});

loadTwins();
