-- imaptap.lua: a Wireshark dissector for IMAP as imaptap records it (and
-- for plain IMAP in general).
--
-- Unlike Wireshark's built-in IMAP dissector it follows the protocol's
-- framing: a line ending in {N}, {N+}, ~{N} or ~{N+} announces N bytes of
-- literal data in either direction, which are never read as commands; the
-- client's DONE ends an IDLE (a continuation, not a tag); the client's lines
-- during AUTHENTICATE are SASL responses. Every tagged completion is tied to
-- its command (frame links, latency) and IDLE's completion to its DONE
-- (DONE->OK). Packet comments imaptap writes ("imaptap anomaly RULE: ...",
-- "imaptap latency 12.345 ms: ...") and the syslog marks of its pcaps
-- (settings, faults) become fields too. Written for Wireshark 4.0 (Lua 5.2).
--
-- Use:  tshark -X lua_script:imaptap.lua -r capture.pcap -Y 'imaptap.command == "APPEND"'
-- or copy the file into ~/.local/lib/wireshark/plugins/.
--
-- It takes TCP port 143 from the built-in IMAP dissector (preference
-- imaptap.ports), recognises IMAP on other ports by the server's greeting
-- (heuristic imaptap_tcp), and can be chosen with -d tcp.port==N,imaptap.
-- Everything it reads comes from a capture and may be hostile: it never
-- trusts a length, bounds every line it keeps, and catches its own errors.

local imaptap = Proto("imaptap", "IMAP (imaptap)")

local F = {
	line = ProtoField.string("imaptap.line", "Line"),
	kind = ProtoField.string("imaptap.kind", "Kind"),
	request = ProtoField.bool("imaptap.request", "Request"),
	response = ProtoField.bool("imaptap.response", "Response"),
	tag = ProtoField.string("imaptap.tag", "Tag"),
	command = ProtoField.string("imaptap.command", "Command"),
	status = ProtoField.string("imaptap.status", "Status"),
	untagged = ProtoField.string("imaptap.untagged", "Untagged response"),
	literal = ProtoField.uint64("imaptap.literal", "Literal announced (bytes)"),
	literal_nonsync = ProtoField.bool("imaptap.literal.nonsync", "Non-synchronising literal"),
	literal_binary = ProtoField.bool("imaptap.literal.binary", "Binary literal (literal8)"),
	literal_data = ProtoField.bytes("imaptap.literal.data", "Literal data"),
	literal_offset = ProtoField.uint64("imaptap.literal.offset", "Offset in the literal"),
	literal_length = ProtoField.uint64("imaptap.literal.length", "Length of the literal"),
	for_tag = ProtoField.string("imaptap.for_tag", "Belongs to the command tagged"),
	for_command = ProtoField.string("imaptap.for_command", "Belongs to the command"),
	done = ProtoField.bool("imaptap.done", "DONE (ends IDLE)"),
	request_in = ProtoField.framenum("imaptap.request_in", "Request in frame", base.NONE, frametype.REQUEST),
	response_in = ProtoField.framenum("imaptap.response_in", "Response in frame", base.NONE, frametype.RESPONSE),
	done_in = ProtoField.framenum("imaptap.done_in", "DONE in frame", base.NONE, frametype.REQUEST),
	latency = ProtoField.relative_time("imaptap.latency", "Latency (command to tagged completion)"),
	done_to_ok = ProtoField.relative_time("imaptap.done_to_ok", "DONE to tagged completion"),
	comment = ProtoField.string("imaptap.comment", "imaptap comment"),
	anomaly = ProtoField.string("imaptap.anomaly", "Anomaly"),
	resolved = ProtoField.string("imaptap.resolved", "Anomaly resolved"),
	fault = ProtoField.string("imaptap.fault", "Injected fault"),
	opaque = ProtoField.bytes("imaptap.opaque", "Data not decoded"),
}
imaptap.fields = {}
for _, f in pairs(F) do
	table.insert(imaptap.fields, f)
end

local E = {
	anomaly = ProtoExpert.new("imaptap.anomaly.expert", "imaptap anomaly",
		expert.group.SEQUENCE, expert.severity.WARN),
	resolved = ProtoExpert.new("imaptap.resolved.expert", "imaptap anomaly resolved",
		expert.group.SEQUENCE, expert.severity.NOTE),
	fault = ProtoExpert.new("imaptap.fault.expert", "imaptap injected fault",
		expert.group.SEQUENCE, expert.severity.NOTE),
	protocol = ProtoExpert.new("imaptap.protocol.expert", "IMAP protocol problem",
		expert.group.PROTOCOL, expert.severity.WARN),
	note = ProtoExpert.new("imaptap.note.expert", "IMAP note",
		expert.group.SEQUENCE, expert.severity.NOTE),
	internal = ProtoExpert.new("imaptap.internal.expert", "imaptap dissector error",
		expert.group.MALFORMED, expert.severity.ERROR),
}
imaptap.experts = {}
for _, e in pairs(E) do
	table.insert(imaptap.experts, e)
end

imaptap.prefs.ports = Pref.range("TCP ports", "143",
	"TCP ports decoded as IMAP by this dissector (the built-in IMAP dissector gives them up)", 65535)

local f_comment = Field.new("frame.comment")
-- imaptap's pcaps mark settings, faults and shutdowns with syslog
-- datagrams (docs/faults.md); a Wireshark without the field reads none
local ok_syslog, f_syslog = pcall(Field.new, "syslog.msg")
if not ok_syslog then
	f_syslog = nil
end

-- Bounds: a line is reassembled up to MAX_LINE bytes; beyond that it is
-- shown in pieces. Text shown in a field is cut at MAX_TEXT.
local MAX_LINE = 1024 * 1024
local MAX_TEXT = 4096
local MAX_INFO = 200

-- State, rebuilt when a file is (re)loaded.
local convs  -- the two endpoints -> conversation
local calls  -- frame number and direction -> the calls of the first pass

local function reset()
	convs = {}
	calls = {}
end
imaptap.init = reset
reset()

---------------------------------------------------------------------------
-- Small helpers

-- Printable text for a field: control and non-ASCII bytes as \xNN, cut.
local function printable(s, max)
	max = max or MAX_TEXT
	local cut = #s > max
	if cut then
		s = s:sub(1, max)
	end
	s = s:gsub("[^\32-\126]", function(c)
		return string.format("\\x%02x", c:byte())
	end)
	if cut then
		s = s .. "..."
	end
	return s
end

-- Seconds (a difference of two NSTimes or numbers) as an NSTime.
local function nstime_of(secs)
	if secs < 0 then
		secs = 0
	end
	local s = math.floor(secs)
	local ns = math.floor((secs - s) * 1e9 + 0.5)
	if ns >= 1000000000 then
		s = s + 1
		ns = ns - 1000000000
	end
	return NSTime.new(s, ns)
end

-- A tag: 1+ ASTRING-CHARs (RFC 3501 section 9): no space, CTL, 8-bit,
-- "(", ")", "{", "%", "*", '"', "\" and never "+".
local function valid_tag(t)
	return #t > 0 and #t <= 256 and not t:find('[^\33-\126]') and not t:find('[(){%%*"\\+]')
end

local function upper_atom(w)
	if not w or #w == 0 or #w > 64 or w:find("[^\33-\126]") then
		return nil
	end
	return w:upper()
end

-- The literal announced at the end of a line segment (CRLF or LF already
-- cut off): count (a number), nonsync, binary; nil when none. Counts are
-- number64 (RFC 9051): more than 18 digits is no count.
local function literal_marker(seg)
	local pre, digits, plus = seg:match("()%{(%d+)(%+?)%}$")
	if not pre then
		return nil
	end
	if #digits > 18 then
		return nil, "literal count too long"
	end
	local binary = pre > 1 and seg:sub(pre - 1, pre - 1) == "~"
	return tonumber(digits), plus == "+", binary
end

-- Whether a segment ends inside a quoted string (a quote hides braces).
-- Jumps from quote to backslash, so a long line costs little.
local function ends_in_quote(seg)
	local inq = false
	local i = 1
	while true do
		local j = seg:find(inq and '["\\]' or '"', i)
		if not j then
			return inq
		end
		local c = seg:sub(j, j)
		if c == "\\" then
			i = j + 2
		else
			inq = not inq
			i = j + 1
		end
	end
end

-- Server lines whose rest is free text, where braces mean nothing.
local TEXT_WORDS = { OK = true, NO = true, BAD = true, BYE = true, PREAUTH = true }

---------------------------------------------------------------------------
-- Conversation state

local function new_dir()
	return {
		mode = "line",     -- "line" or "literal"
		lit_left = 0,      -- literal bytes still owed
		lit_len = 0,       -- the literal's announced length
		cont = false,      -- the next line segment continues a logical line
		piece = false,     -- inside an overlong line shown in pieces
		logical = nil,     -- what the logical line in progress belongs to
		opaque = nil,      -- why the rest of this direction is not decoded
		probe = nil,       -- after STARTTLS/COMPRESS: check the next bytes
	}
end

local function new_conv()
	return {
		server = nil,      -- "addr:port" of the server, once known
		dir = { [0] = new_dir(), [1] = new_dir() }, -- 0 client, 1 server
		pending = {},      -- tag -> request record of a command in flight
		idle = nil,        -- the IDLE request in progress
		auth = nil,        -- the AUTHENTICATE request in progress
		wants_plus = nil,  -- a command waiting for "+" for its literal
	}
end

local function endpoint(addr, port)
	return tostring(addr) .. ":" .. tostring(port)
end

-- The conversation's key: its two endpoints. Fields such as tcp.stream
-- are not filled in when a pass builds no tree (Wireshark's first pass
-- over a file), and the first pass is where the state is built. (A later
-- connection between the same two ports goes on with the earlier state.)
local function conv_key(pinfo)
	local a = endpoint(pinfo.src, pinfo.src_port)
	local b = endpoint(pinfo.dst, pinfo.dst_port)
	if a < b then
		return a .. " " .. b
	end
	return b .. " " .. a
end

---------------------------------------------------------------------------
-- Parsing (first time a call is seen; the results are kept, so later
-- passes draw the same tree without touching the state)

-- Units are kept for later passes: only the start of a long line's text
-- (what is shown of it).
local function add_unit(rec, u)
	if u.text and #u.text > MAX_TEXT then
		u.text = u.text:sub(1, MAX_TEXT + 1)
	end
	rec.units[#rec.units + 1] = u
end

-- A client line that starts a logical line.
local function client_line(conv, u, text, pinfo)
	local now = pinfo.rel_ts
	if conv.auth then
		-- a SASL response (or "*" to cancel): base64, never a command
		u.kind = "sasl-response"
		u.for_req = conv.auth
		return nil
	end
	if #text == 4 and text:upper() == "DONE" then
		if conv.idle then
			u.kind = "done"
			u.for_req = conv.idle
			if not conv.idle.done_frame then
				conv.idle.done_frame = pinfo.number
				conv.idle.done_time = now
				if not conv.idle.plus then
					u.note = "DONE before the server's + to IDLE"
				end
			else
				u.problem = "a second DONE for the same IDLE"
			end
			return nil
		end
		u.kind = "stray-done"
		u.problem = "DONE while no IDLE is in progress"
		-- a server that reads it as a command answers with the tag DONE
		local req = { tag = "DONE", command = "DONE", frame = pinfo.number, time = now, stray = true }
		conv.pending["DONE"] = req
		u.req = req
		return req
	end
	local tag, rest = text:match("^([^ ]+) ?(.*)$")
	if not tag or not valid_tag(tag) then
		u.kind = "unparsed"
		u.problem = "client line without a valid tag"
		return nil
	end
	local word, after = rest:match("^([^ ]*) ?(.*)$")
	local cmd = upper_atom(word)
	if not cmd then
		u.kind = "unparsed"
		u.problem = "client line without a command"
		return nil
	end
	if cmd == "UID" then
		local sub = upper_atom(after:match("^([^ ]*)"))
		if sub then
			cmd = "UID " .. sub
		end
	end
	u.kind = "command"
	local req = { tag = tag, command = cmd, frame = pinfo.number, time = now }
	if conv.pending[tag] and not conv.pending[tag].stray then
		u.problem = "tag " .. printable(tag, 64) .. " is already in flight"
	end
	conv.pending[tag] = req
	u.req = req
	if cmd == "IDLE" then
		conv.idle = req
	elseif cmd == "AUTHENTICATE" then
		conv.auth = req
	end
	return req
end

-- A server line that starts a logical line. Returns whether braces at its
-- end may announce a literal (not in free text).
local function server_line(conv, u, text, pinfo)
	if text == "+" or text:sub(1, 2) == "+ " then
		u.kind = "continuation-request"
		local req = conv.wants_plus or (conv.idle and not conv.idle.plus and conv.idle) or conv.auth
		if conv.wants_plus then
			conv.wants_plus = nil
		elseif conv.idle and req == conv.idle then
			conv.idle.plus = pinfo.number
		end
		u.for_req = req
		return false
	end
	local first, second, rest = text:match("^([^ ]*) ?([^ ]*) ?(.*)$")
	local word = upper_atom(second)
	if first == "*" then
		u.kind = "untagged"
		if second and second:find("^%d+$") then
			u.untagged = upper_atom(rest:match("^([^ ]*)"))
		else
			u.untagged = word
		end
		u.logical = { untagged = u.untagged }
		return not (word and TEXT_WORDS[word])
	end
	if word == "OK" or word == "NO" or word == "BAD" then
		u.kind = "completion"
		u.tag = first
		u.status = word
		local req = conv.pending[first]
		if req then
			conv.pending[first] = nil
			u.req = req
			req.response_in = pinfo.number
			req.status = word
			u.latency = pinfo.rel_ts - req.time
			if req == conv.idle then
				conv.idle = nil
				if req.done_time then
					u.done_to_ok = pinfo.rel_ts - req.done_time
					u.done_in = req.done_frame
				end
			end
			if req == conv.auth then
				conv.auth = nil
			end
			if conv.wants_plus == req then
				conv.wants_plus = nil
			end
			if word == "OK" and (req.command == "STARTTLS" or req.command == "COMPRESS") then
				-- what follows may be TLS or DEFLATE (a raw capture) or
				-- still plain text (imaptap's own capture)
				conv.dir[0].probe = req.command
				conv.dir[1].probe = req.command
				u.switch = req.command
			end
		else
			u.problem = "tagged response whose tag no command in flight used"
		end
		return false
	end
	u.kind = "unparsed"
	if first and valid_tag(first) then
		u.tag = first
	end
	u.problem = "server line that is neither untagged, a continuation nor a completion"
	return true
end

-- One line segment of direction d, complete to its LF (or the end of an
-- overlong line's pieces): off/len place it in the call's tvb, text is
-- without its line end, ending is "\r\n" or "\n".
local function line_unit(conv, st, d, rec, pinfo, off, len, text, ending)
	local u = { off = off, len = len, dir = d, text = text }
	local may_literal = true
	local quote_unknown = false
	if st.piece then
		-- the end of an overlong line shown in pieces
		u.kind = "line-piece"
		u.for_req = st.logical and st.logical.req
		u.logical = st.logical
		st.piece = false
		quote_unknown = true
		may_literal = not (st.logical and st.logical.text_only)
	elseif st.cont then
		-- the logical line goes on after a literal
		u.kind = "after-literal"
		u.for_req = st.logical and st.logical.req
		u.logical = st.logical
		st.cont = false
	elseif d == 0 then
		local req = client_line(conv, u, text, pinfo)
		u.logical = { req = req }
		-- SASL responses, DONE: no literals in them
		may_literal = u.kind == "command" or u.kind == "unparsed"
	else
		may_literal = server_line(conv, u, text, pinfo)
		u.logical = u.logical or { req = u.req }
	end
	if ending == "\n" then
		u.bare_lf = true
	end
	if may_literal then
		local n, nonsync, binary = literal_marker(text)
		if n and (quote_unknown or not ends_in_quote(text)) then
			u.literal = n
			u.nonsync = nonsync
			u.binary = binary
			st.lit_len = n
			st.lit_left = n
			st.logical = u.logical
			if n > 0 then
				st.mode = "literal"
			else
				st.cont = true
			end
			if d == 0 and not nonsync then
				conv.wants_plus = u.for_req or u.req
			end
		elseif nonsync == "literal count too long" then
			u.problem = u.problem or nonsync
		end
	end
	add_unit(rec, u)
	return u
end

local function opaque_unit(rec, st, off, len)
	add_unit(rec, { off = off, len = len, kind = "opaque", why = st.opaque })
end

-- Whether bytes that follow STARTTLS or COMPRESS are still text.
local function looks_like_text(s)
	local head = s:sub(1, 64)
	return not head:find("[^\9\10\13\32-\126]")
end

local function parse(tvb, pinfo, conv, d)
	local rec = { units = {} }
	local st = conv.dir[d]
	local L = tvb:len()
	local s = tvb:raw(0, L)
	local off = 0
	local guard = 0
	while off < L do
		guard = guard + 1
		if guard > L + 16 then
			break -- cannot happen: every turn consumes or leaves
		end
		if st.probe then
			if not looks_like_text(s:sub(off + 1, off + 64)) then
				st.opaque = st.probe == "STARTTLS" and "TLS after STARTTLS"
					or "compressed data after COMPRESS"
			end
			st.probe = nil
		end
		if st.opaque then
			opaque_unit(rec, st, off, L - off)
			off = L
		elseif st.mode == "literal" then
			local n = math.min(st.lit_left, L - off)
			add_unit(rec, {
				off = off, len = n, kind = "literal-data", dir = d,
				lit_offset = st.lit_len - st.lit_left, lit_len = st.lit_len,
				for_req = st.logical and st.logical.req, logical = st.logical,
			})
			st.lit_left = st.lit_left - n
			off = off + n
			if st.lit_left <= 0 then
				st.mode = "line"
				st.cont = true
			end
		else
			local lf = s:find("\n", off + 1, true)
			if lf and lf - off > MAX_LINE and not st.piece then
				lf = nil -- too long to keep whole: shown in pieces below
			end
			if lf then
				local ending = "\n"
				local text_end = lf - 1
				if lf >= off + 2 and s:sub(lf - 1, lf - 1) == "\r" then
					ending = "\r\n"
					text_end = lf - 2
				end
				line_unit(conv, st, d, rec, pinfo, off, lf - off, s:sub(off + 1, text_end), ending)
				off = lf
			elseif not st.piece and L - off < MAX_LINE and pinfo.can_desegment > 0 then
				-- an incomplete line: TCP hands it back with the next segment
				rec.deseg_offset = off
				rec.deseg_len = DESEGMENT_ONE_MORE_SEGMENT
				break
			else
				-- an overlong line, or no reassembly possible: show this
				-- piece; the rest of the line follows in later segments
				local u = { off = off, len = L - off, kind = "line-piece", dir = d,
					text = s:sub(off + 1, L) }
				if not st.piece then
					-- the piece starts a line: read its head as usual
					if st.cont then
						st.cont = false
						u.kind = "after-literal"
						u.for_req = st.logical and st.logical.req
						u.logical = st.logical
					elseif d == 0 then
						u.logical = { req = client_line(conv, u, u.text:match("^[^\r]*"), pinfo) }
					else
						local may = server_line(conv, u, u.text, pinfo)
						u.logical = u.logical or { req = u.req }
						u.logical.text_only = not may
					end
					u.first_piece = true
					st.logical = u.logical
					u.problem = u.problem or "line longer than " .. MAX_LINE .. " bytes, or not reassembled: shown in pieces"
				else
					u.for_req = st.logical and st.logical.req
				end
				st.piece = true
				add_unit(rec, u)
				off = L
			end
		end
	end
	return rec
end

---------------------------------------------------------------------------
-- Packet comments written by imaptap

local UNIT = { us = 1e-6, ["\194\181s"] = 1e-6, ms = 1e-3, s = 1 }

-- {kind, text, rule|spec|seconds} for one comment, nil when not imaptap's.
local function parse_comment(c)
	local kind, rest = c:match("^imaptap ([%w-]+) (.*)$")
	if not kind then
		return nil
	end
	local r = { kind = kind, text = c }
	if kind == "anomaly" or kind == "resolved" or kind == "fault" then
		local name = rest:match("^(%S+)")
		if name then
			r.name = name:gsub(":$", "")
		end
	elseif kind == "latency" or kind == "done-to-ok" then
		local num, unit = rest:match("^(%d+%.?%d*) (%S+):")
		if not num then
			num, unit = rest:match("^(%d+%.?%d*) ?(%a+)")
		end
		if num and UNIT[unit] then
			r.seconds = tonumber(num) * UNIT[unit]
		end
	end
	return r
end

-- An imaptap syslog mark ("1 TIME HOST imaptap - fault - injected fault
-- ... spec=SPEC: text") as a comment; nil for any other datagram.
local function parse_mark(m)
	local msgid, text = m:match("^1 %S+ %S+ imaptap %S+ (%S+) %S+ (.*)$")
	if not msgid then
		return nil
	end
	local r = { kind = "mark", text = "imaptap " .. msgid .. " mark: " .. text }
	if msgid == "fault" then
		r.kind = "fault"
		r.name = text:match("spec=(%S-):%s") or text:match("spec=(%S+)")
	elseif msgid == "anomaly" then
		r.kind = "anomaly"
		r.name = text:match("rule=([^%s:]+)")
	end
	return r
end

-- (Read each time: a pass without a tree has no comment fields.) A mark
-- counts only on a packet without imaptap's comments: in a pcapng the
-- comment on the mark's packet says the same.
local function frame_comments(pinfo)
	local out = {}
	for _, fi in ipairs({ f_comment() }) do
		local ok, v = pcall(function() return fi.value end)
		if ok and type(v) == "string" then
			local r = parse_comment(v)
			if r then
				out[#out + 1] = r
			end
		end
	end
	if f_syslog and #out == 0 then
		for _, fi in ipairs({ f_syslog() }) do
			local ok, v = pcall(function() return fi.value end)
			local r = ok and type(v) == "string" and parse_mark(v)
			if r then
				out[#out + 1] = r
			end
		end
	end
	return out
end

local function has_comment(pinfo, kind)
	for _, r in ipairs(frame_comments(pinfo)) do
		if r.kind == kind and r.seconds then
			return true
		end
	end
	return false
end

---------------------------------------------------------------------------
-- Drawing

local function describe_req(req)
	if not req then
		return ""
	end
	return printable(req.tag, 64) .. " " .. req.command
end

-- A duration as imaptap's timeline writes it.
local function duration(secs)
	if secs < 1e-3 then
		return string.format("%d us", math.floor(secs * 1e6 + 0.5))
	elseif secs < 1 then
		return string.format("%.3f ms", secs * 1e3)
	end
	return string.format("%.3f s", secs)
end

local function summary(u)
	local t = u.text and printable(u.text, 120) or ""
	if u.kind == "literal-data" then
		return string.format("{literal %d bytes}", u.len)
	elseif u.kind == "opaque" then
		return "[" .. u.why .. "]"
	elseif u.kind == "completion" and u.req then
		local note = u.req.command .. " " .. duration(u.latency)
		if u.done_to_ok then
			note = note .. ", DONE->OK " .. duration(u.done_to_ok)
		end
		return t .. " (" .. note .. ")"
	end
	return t
end

local function draw(rec, tvb, pinfo, tree)
	pinfo.cols.protocol = "IMAP"
	if #rec.units == 0 then
		return
	end
	local top = tree:add(imaptap, tvb(0, tvb:len()))
	local info = {}
	local latency_from_comment = has_comment(pinfo, "latency")
	local done_from_comment = has_comment(pinfo, "done-to-ok")
	for _, u in ipairs(rec.units) do
		if u.off + u.len > tvb:len() then
			break -- beyond what this pass hands over (see find_call)
		end
		local range = tvb(u.off, u.len)
		local item
		if u.kind == "literal-data" then
			item = top:add(F.literal_data, range)
			item:set_text(string.format("Literal data: %d bytes (offset %.0f of %.0f)",
				u.len, u.lit_offset, u.lit_len))
			item:add(F.kind, range, u.kind):set_generated()
			item:add(F.literal_offset, range, UInt64.new(u.lit_offset % 4294967296, math.floor(u.lit_offset / 4294967296))):set_generated()
			item:add(F.literal_length, range, UInt64.new(u.lit_len % 4294967296, math.floor(u.lit_len / 4294967296))):set_generated()
		elseif u.kind == "opaque" then
			item = top:add(F.opaque, range)
			item:set_text("Not decoded: " .. u.why)
			item:add(F.kind, range, u.kind):set_generated()
			item:add_proto_expert_info(E.note, u.why)
		else
			item = top:add(F.line, range, printable(u.text))
			item:add(F.kind, range, u.kind):set_generated()
			if u.dir == 0 and (u.kind == "command" or u.kind == "stray-done") then
				item:add(F.request, range, true):set_generated()
			elseif u.dir == 1 then
				item:add(F.response, range, true):set_generated()
			end
			if u.kind == "command" and u.req then
				item:add(F.tag, range, printable(u.req.tag, 256))
				item:add(F.command, range, u.req.command)
				if u.req.response_in then
					item:add(F.response_in, range, u.req.response_in):set_generated()
				end
			elseif u.kind == "completion" then
				item:add(F.tag, range, printable(u.tag, 256))
				item:add(F.status, range, u.status)
				if u.req then
					item:add(F.command, range, u.req.command):set_generated()
					item:add(F.request_in, range, u.req.frame):set_generated()
					if not latency_from_comment then
						item:add(F.latency, range, nstime_of(u.latency)):set_generated()
					end
					if u.done_in then
						item:add(F.done_in, range, u.done_in):set_generated()
					end
					if u.done_to_ok and not done_from_comment then
						item:add(F.done_to_ok, range, nstime_of(u.done_to_ok)):set_generated()
					end
				end
				if u.switch then
					item:add_proto_expert_info(E.note, u.switch .. " completed: the stream changes layer here")
				end
			elseif u.kind == "untagged" and u.untagged then
				item:add(F.untagged, range, u.untagged)
			elseif u.kind == "done" then
				item:add(F.done, range, true)
			elseif u.kind == "unparsed" and u.tag then
				item:add(F.tag, range, printable(u.tag, 256))
			end
			if u.literal then
				item:add(F.literal, range, UInt64.new(u.literal % 4294967296, math.floor(u.literal / 4294967296)))
				if u.nonsync then
					item:add(F.literal_nonsync, range, true)
				end
				if u.binary then
					item:add(F.literal_binary, range, true)
				end
			end
			if u.bare_lf then
				item:append_text(" [bare LF]")
			end
		end
		local owner = u.for_req
		if owner and u.kind ~= "command" and u.kind ~= "completion" then
			item:add(F.for_tag, range, printable(owner.tag, 256)):set_generated()
			item:add(F.for_command, range, owner.command):set_generated()
		end
		if u.problem then
			item:add_proto_expert_info(E.protocol, u.problem)
		end
		if u.note then
			item:add_proto_expert_info(E.note, u.note)
		end
		if #info < 6 then
			info[#info + 1] = summary(u)
		elseif #info == 6 then
			info[#info + 1] = "..."
		end
	end
	local prefix = rec.units[1].dir == 0 and "C: " or "S: "
	local text = prefix .. table.concat(info, " | ")
	if #text > MAX_INFO then
		text = text:sub(1, MAX_INFO) .. "..."
	end
	pinfo.cols.info = text
end

---------------------------------------------------------------------------
-- Entry points

-- Which side is the server: the port the dissector was chosen for, else
-- who sent a greeting-like line, else who spoke first (the server does).
local function learn_server(conv, pinfo, tvb, hint_server_is_src)
	if conv.server then
		return
	end
	local src = endpoint(pinfo.src, pinfo.src_port)
	local dst = endpoint(pinfo.dst, pinfo.dst_port)
	if hint_server_is_src ~= nil then
		conv.server = hint_server_is_src and src or dst
		return
	end
	local port = pinfo.match_uint
	if port and port > 0 and pinfo.src_port ~= pinfo.dst_port then
		if pinfo.src_port == port then
			conv.server = src
			return
		elseif pinfo.dst_port == port then
			conv.server = dst
			return
		end
	end
	local head = tvb:raw(0, math.min(tvb:len(), 2))
	if head == "* " or head == "+ " or head == "+\r" then
		conv.server = src
	else
		conv.server = src -- the first to speak
	end
end

-- The first pass's record of a call, found again on a later pass. A later
-- pass hands over the same bytes from the same place, but a reassembled
-- line only up to where the first pass asked for more: a prefix of what
-- the first pass saw.
local HEAD = 64
local function find_call(tvb, pinfo, d)
	local list = calls[pinfo.number .. ":" .. d]
	if not list then
		return nil
	end
	local head = tvb:raw(0, math.min(tvb:len(), HEAD))
	for _, rec in ipairs(list) do
		if rec.head:sub(1, #head) == head:sub(1, #rec.head) then
			return rec
		end
	end
	return nil
end

local function keep_call(rec, tvb, pinfo, d)
	local key = pinfo.number .. ":" .. d
	rec.head = tvb:raw(0, math.min(tvb:len(), HEAD))
	calls[key] = calls[key] or {}
	table.insert(calls[key], rec)
end

local function dissect(tvb, pinfo, tree, server_is_src)
	local ckey = conv_key(pinfo)
	local conv = convs[ckey]
	if not conv then
		conv = new_conv()
		convs[ckey] = conv
	end
	learn_server(conv, pinfo, tvb, server_is_src)
	local d = endpoint(pinfo.src, pinfo.src_port) == conv.server and 1 or 0
	local rec
	if pinfo.visited then
		rec = find_call(tvb, pinfo, d)
	else
		rec = parse(tvb, pinfo, conv, d)
		keep_call(rec, tvb, pinfo, d)
	end
	if not rec then
		-- not seen on the first pass: the state for it is unknown
		pinfo.cols.protocol = "IMAP"
		local item = tree:add(imaptap, tvb(0, tvb:len()))
		item:add_proto_expert_info(E.note, "not seen on the first pass: not decoded")
		return tvb:len()
	end
	draw(rec, tvb, pinfo, tree)
	if rec.deseg_len and rec.deseg_offset < tvb:len() then
		pinfo.desegment_offset = rec.deseg_offset
		pinfo.desegment_len = rec.deseg_len
	end
	return tvb:len()
end

-- Errors are caught so that one odd packet never stops the dissection;
-- they are shown as an expert item, never hidden.
local function guarded(tvb, pinfo, tree, server_is_src)
	local ok, res = pcall(dissect, tvb, pinfo, tree, server_is_src)
	if ok then
		return res
	end
	pcall(function()
		local item = tree:add(imaptap, tvb(0, tvb:len()))
		item:add_proto_expert_info(E.internal, "imaptap dissector error: " .. printable(tostring(res), 300))
	end)
	return tvb:len()
end

function imaptap.dissector(tvb, pinfo, tree)
	if tvb:len() == 0 then
		return 0
	end
	return guarded(tvb, pinfo, tree, nil)
end

-- The heuristic: a TCP stream whose server greets like IMAP ("* OK",
-- "* PREAUTH", "* BYE"), and every later segment of a stream so found.
local function heuristic(tvb, pinfo, tree)
	local ok, res = pcall(function()
		if tvb:len() == 0 then
			return false
		end
		local hint = nil
		if not convs[conv_key(pinfo)] then
			local head = tvb:raw(0, math.min(tvb:len(), 512))
			local line = head:match("^(%* [A-Za-z]+)[ \r\n]")
			local word = line and line:sub(3):upper()
			if not (word == "OK" or word == "PREAUTH" or word == "BYE") or not head:find("\n", 1, true) then
				return false
			end
			hint = true
		end
		guarded(tvb, pinfo, tree, hint)
		return true
	end)
	return ok and res or false
end
imaptap:register_heuristic("tcp", heuristic)

---------------------------------------------------------------------------
-- Ports: imaptap takes them from the built-in IMAP dissector

local tcp_table = DissectorTable.get("tcp.port")
local registered = ""

local function register_ports()
	local want = imaptap.prefs.ports
	want = want and tostring(want) or ""
	if want == registered then
		return
	end
	if registered ~= "" then
		tcp_table:remove(registered, imaptap)
		-- give port 143 back to the built-in dissector
		local builtin = Dissector.get("imap")
		if builtin then
			tcp_table:add(143, builtin)
		end
	end
	if want ~= "" then
		tcp_table:add(want, imaptap)
	end
	registered = want
end

function imaptap.prefs_changed()
	pcall(register_ports)
end
register_ports()

---------------------------------------------------------------------------
-- Packet comments: a post-dissector, as comments may sit on any frame

local comments = Proto("imaptap_comments", "imaptap packet comments")

function comments.dissector(tvb, pinfo, tree)
	pcall(function()
		local list = frame_comments(pinfo)
		if #list == 0 then
			return
		end
		local top = tree:add(imaptap, tvb(0, 0), "imaptap comments")
		for _, r in ipairs(list) do
			local item = top:add(F.comment, tvb(0, 0), printable(r.text))
			if r.kind == "anomaly" and r.name then
				item:add(F.anomaly, tvb(0, 0), printable(r.name, 128))
				item:add_proto_expert_info(E.anomaly, printable(r.text, 300))
			elseif r.kind == "resolved" and r.name then
				item:add(F.resolved, tvb(0, 0), printable(r.name, 128))
				item:add_proto_expert_info(E.resolved, printable(r.text, 300))
			elseif r.kind == "fault" and r.name then
				item:add(F.fault, tvb(0, 0), printable(r.name, 128))
				item:add_proto_expert_info(E.fault, printable(r.text, 300))
			elseif r.kind == "latency" and r.seconds then
				item:add(F.latency, tvb(0, 0), nstime_of(r.seconds))
			elseif r.kind == "done-to-ok" and r.seconds then
				item:add(F.done_to_ok, tvb(0, 0), nstime_of(r.seconds))
			end
		end
	end)
end
register_postdissector(comments)
