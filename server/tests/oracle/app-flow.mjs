// The Bluesky app's day, driven through this PDS with @atproto/api's agent as the app drives it:
// log in, set the AppView proxy header on every call, read the profile and timeline, post, see
// the post in the author feed and its thread before the AppView has it (read-after-write), list
// notifications, age assurance, chat conversations, a custom feed, and report a post. The agent
// validates every answer against the lexicons (a lexicon-invalid answer throws). Prints what it
// saw as JSON.
import { readFileSync } from 'node:fs'
import { AtpAgent } from '@atproto/api'

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const agent = new AtpAgent({ service: input.base })
await agent.login({ identifier: input.handle, password: input.password })
// The app sends every call with the AppView's proxy header.
agent.configureProxy(`${input.appviewDid}#bsky_appview`)
const did = agent.session.did

const out = {}
out.profile = (await agent.getProfile({ actor: did })).data
out.timeline = (await agent.getTimeline({ limit: 30 })).data
out.ageAssurance = (
  await agent.app.bsky.ageassurance.getState({ countryCode: 'DE' })
).data
const post = await agent.post({
  text: 'hello from the app flow',
  createdAt: new Date().toISOString(),
})
out.post = post
out.authorFeed = (await agent.getAuthorFeed({ actor: did })).data
out.thread = (await agent.getPostThread({ uri: post.uri })).data
out.notifications = (await agent.listNotifications()).data
out.convos = (
  await agent.withProxy('bsky_chat', input.chatDid).chat.bsky.convo.listConvos()
).data
out.feed = (await agent.app.bsky.feed.getFeed({ feed: input.feedUri })).data
out.report = (
  await agent.withProxy('atproto_labeler', input.reportDid).createModerationReport({
    reasonType: 'com.atproto.moderation.defs#reasonSpam',
    subject: { $type: 'com.atproto.repo.strongRef', uri: post.uri, cid: post.cid },
  })
).data
out.preferences = (await agent.app.bsky.actor.getPreferences()).data
console.log(JSON.stringify(out))
